// What a gateway process loads at start (docs/benchmarks.md, Footprint): not the
// CLI, not TypeBox or yaml, not undici (its own upstream pool replaced it), not
// node:http2, not Node's bundled undici. Each of these held megabytes in every gateway; an import added
// anywhere on the gateway's path brings one back, and this test names it.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";

/** `herd gateway`'s command and the gateway (single process or primary; a worker loads the same modules). */
const ENTRY_MODULES = [
  new URL("../cli/gateway-command.ts", import.meta.url).href,
  new URL("../daemons/gateway.ts", import.meta.url).href,
];

/** Imports the gateway's modules in a fresh process; returns the module URLs and Node's built-ins it loaded. */
function loadedByGateway(): { urls: string[]; builtins: string[] } {
  const script = `
    import { registerHooks } from "node:module";
    const urls = [];
    registerHooks({ load(url, context, next) { urls.push(url); return next(url, context); } });
    for (const m of ${JSON.stringify(ENTRY_MODULES)}) await import(m);
    console.log(JSON.stringify({ urls, builtins: process.moduleLoadList }));
  `;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop() as string);
}

test("a gateway loads neither the CLI, nor TypeBox, yaml, undici, node:http2 or Node's bundled undici", () => {
  const { urls, builtins } = loadedByGateway();
  assert.ok(
    urls.some((u) => u.includes("/src/gateway/upstream-pool.ts")),
    "the upstream pool is loaded (the check below would pass on nothing otherwise)",
  );
  const unwanted = [
    "/src/cli/main.ts",
    "/src/cli/platform.ts",
    "/src/model/manifest.ts",
    "/src/model/live-config.ts",
    "@sinclair/typebox",
    "/node_modules/yaml/",
    "/node_modules/undici/",
  ];
  for (const part of unwanted) {
    assert.deepEqual(
      urls.filter((u) => u.includes(part)),
      [],
      `${part} is loaded at start`,
    );
  }
  assert.deepEqual(
    builtins.filter((b) => b === "NativeModule http2" || b.includes("internal/deps/undici")),
    [],
    "node:http2 or Node's bundled undici is loaded at start (an ES import of node:http? see common/node-http.ts)",
  );
});
