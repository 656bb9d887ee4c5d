import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { hooksFlag } from "./runtime.ts";
import { stripTree } from "./strip-hooks.mjs";

/** Runs `file` with the hooks on the cache in `cache`; what it printed. */
function run(cache: string, file: string): { stdout: string; stderr: string } {
  const out = spawnSync(process.execPath, [hooksFlag(cache), file], { encoding: "utf8", timeout: 30_000 });
  assert.equal(out.status, 0, out.stderr);
  return out;
}

test("the hooks load a TypeScript file from the cache: stripped once, then never again, lines kept", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-strip-hooks-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cache = join(dir, "cache");
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  writeFileSync(join(dir, "lib.ts"), `export const twice = (n: number): number => n * 2;\n`);
  const main = join(dir, "main.ts");
  const source = (label: string) =>
    [
      `import { twice } from "./lib.ts";`,
      `interface Shape { side: number }`,
      `const shape: Shape = { side: twice(21) };`,
      `const line = new Error().stack?.split("\\n")[1] ?? "";`,
      `const stripper = (process as unknown as { moduleLoadList: string[] }).moduleLoadList.some((m) => m.includes("amaro"));`,
      `// a comment — with non-ASCII characters`,
      `console.log(JSON.stringify({ label: ${JSON.stringify(label)}, side: shape.side, line, stripper, arrow: "→" }));`,
      "",
    ].join("\n");
  writeFileSync(main, source("a"));

  const first = JSON.parse(run(cache, main).stdout);
  assert.equal(first.side, 42);
  assert.equal(first.stripper, true, "a cold cache strips (and loads the stripper)");
  assert.match(first.line, /main\.ts:4:/, "the stack names the .ts file and its own line");
  assert.equal(first.arrow, "→", "a non-ASCII character (written as an escape) means the same");
  assert.equal(readdirSync(cache).length, 2);

  const second = JSON.parse(run(cache, main).stdout);
  assert.deepEqual(second, { ...first, stripper: false }, "a warm cache strips nothing");

  // A changed file is stripped again (the cache is keyed by content); the unchanged one is not.
  writeFileSync(main, source("b"));
  const third = JSON.parse(run(cache, main).stdout);
  assert.equal(third.label, "b");
  assert.equal(readdirSync(cache).length, 3);
  assert.equal(JSON.parse(run(cache, main).stdout).stripper, false);
});

test("a herd module missing from the cache: a child strips herd's sources, the process loads no stripper", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-strip-hooks-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cache = join(dir, "cache");
  // Plain JavaScript importing one of herd's modules (errors.ts has a non-ASCII character: "—").
  const main = join(dir, "main.mjs");
  const errors = new URL("../common/errors.ts", import.meta.url).href;
  writeFileSync(
    main,
    [
      `const { HerdError } = await import(${JSON.stringify(errors)});`,
      `const stripper = process.moduleLoadList.some((m) => m.includes("amaro"));`,
      `console.log(JSON.stringify({ name: new HerdError("invalid", "x").name, stripper }));`,
      "",
    ].join("\n"),
  );
  assert.deepEqual(JSON.parse(run(cache, main).stdout), { name: "HerdError", stripper: false });
  // All of src/ (tests aside), in ASCII.
  const files = readdirSync(cache);
  assert.ok(files.length > 100, `${files.length} files`);
  assert.ok(files.every((f) => !f.endsWith(".tmp")));
  for (const f of files) assert.doesNotMatch(readFileSync(join(cache, f), "utf8"), /[\u0080-\uffff]/, f);
});

test("a cache that cannot be written: the process runs all the same", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-strip-hooks-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "package.json"), `{ "type": "module" }\n`);
  writeFileSync(join(dir, "main.ts"), `const n: number = 7;\nconsole.log(n);\n`);
  // A file where the cache directory should be: nothing can be written under it.
  writeFileSync(join(dir, "cache"), "");
  assert.equal(run(join(dir, "cache"), join(dir, "main.ts")).stdout, "7\n");
});

test("filling the cache keeps the entries of the tree's files and removes others unused for a week", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-strip-hooks-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, "src");
  const cache = join(dir, "cache");
  mkdirSync(join(root, "a"), { recursive: true });
  writeFileSync(join(root, "a", "one.ts"), "export const one: number = 1;\n");
  writeFileSync(join(root, "two.ts"), "export const two: number = 2;\n");
  writeFileSync(join(root, "two.test.ts"), "export {};\n");
  stripTree(root, cache);
  const current = readdirSync(cache).sort();
  assert.equal(current.length, 2, "one entry per file, tests aside");
  // Eight days pass: the tree's entries are old, and an entry of a file since changed is too.
  const old = new Date(Date.now() - 8 * 24 * 3600 * 1000);
  writeFileSync(join(cache, "stale.js"), "");
  for (const name of readdirSync(cache)) utimesSync(join(cache, name), old, old);
  stripTree(root, cache);
  assert.deepEqual(readdirSync(cache).sort(), current);
  for (const name of current) assert.ok(Date.now() - statSync(join(cache, name)).mtimeMs < 60_000);
});

test("Fastify and prom-client load without node:https, node:tls and node:http2, which come at first use", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-strip-hooks-lazy-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const main = join(dir, "main.mjs");
  writeFileSync(
    main,
    [
      `import { createRequire } from "node:module";`,
      `const require = createRequire(${JSON.stringify(join(import.meta.dirname, "../../package.json"))});`,
      `const loaded = () => process.moduleLoadList.filter((m) => /^NativeModule (https|tls|http2)$/.test(m)).map((m) => m.split(" ")[1]).sort();`,
      `const Fastify = require("fastify");`,
      `require("prom-client");`,
      `const plain = Fastify();`,
      `await plain.ready();`,
      `const before = loaded();`,
      // An HTTP/2 server still works: the stand-in loads node:http2 and hands on its functions.
      `const h2 = Fastify({ http2: true });`,
      `h2.get("/", async () => "ok");`,
      `await h2.listen({ port: 0, host: "127.0.0.1" });`,
      `const server = h2.server.constructor.name;`,
      `await h2.close();`,
      `await plain.close();`,
      `console.log(JSON.stringify({ before, after: loaded(), server }));`,
      "",
    ].join("\n"),
  );
  const out = JSON.parse(run(join(dir, "cache"), main).stdout);
  assert.deepEqual(out.before, [], "nothing of HTTPS or HTTP/2 is loaded by the packages themselves");
  assert.deepEqual(out.after, ["http2", "tls"]);
  assert.equal(out.server, "Http2Server");
});
