// What a server on SQLite loads at start: not the etcd client, which brings
// gRPC, TLS and HTTP/2 (about 9 MB of herd up's memory, docs/benchmarks.md,
// Footprint). It is loaded when a store or command names etcd; an import added
// on the server's path brings it back, and this test names it.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";

/** What `herd up` and `herd server` import before they know the store. */
const ENTRY_MODULES = [
  new URL("../cli/platform.ts", import.meta.url).href,
  new URL("../cli/store-commands.ts", import.meta.url).href,
  new URL("../daemons/control-plane.ts", import.meta.url).href,
  new URL("./open.ts", import.meta.url).href,
];

test("a server on SQLite loads neither etcd3 nor gRPC at start", () => {
  const script = `
    import { registerHooks } from "node:module";
    const urls = [];
    registerHooks({ load(url, context, next) { urls.push(url); return next(url, context); } });
    for (const m of ${JSON.stringify(ENTRY_MODULES)}) await import(m);
    console.log(JSON.stringify(urls));
  `;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  const urls = JSON.parse(out.trim().split("\n").pop() as string) as string[];
  assert.ok(
    urls.some((u) => u.includes("/src/store/leadership.ts")),
    "the leader election is loaded (the check below would pass on nothing otherwise)",
  );
  for (const part of ["/node_modules/etcd3/", "/node_modules/@grpc/"])
    assert.deepEqual(
      urls.filter((u) => u.includes(part)),
      [],
      `${part} is loaded at start`,
    );
});
