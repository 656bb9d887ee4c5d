// The config center end to end through `herd up`: an app reads a value from
// its config file and follows its feed (HERD_CONFIG_URL, long poll with a
// version cursor); a change reaches every running instance without a
// restart (same pid; a SIGHUP, as its service asks); a file that does not
// parse is refused and the running version kept; a gray version reaches only
// its share of the instances, then rolls back.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Instance } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, sleep, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-config-e2e-"));
const appDir = join(work, "cfg");

interface Seen {
  pid: number;
  hups: number;
  file: { version: number; greeting?: string; pool?: number };
  feed: { version: number; greeting?: string };
}

before(async () => {
  herd = await startHerd();
  mkdirSync(appDir);
  writeFileSync(
    join(appDir, "herd.yaml"),
    `app: cfg
services:
  web:
    command: node server.js
    instances: 4
    health: { path: /healthz }
    config: { onChange: signal }
`,
  );
  writeFileSync(join(appDir, "package.json"), `{"name":"cfg","version":"1.0.0","type":"module"}\n`);
  // Reads its config file on every request and follows the feed; counts SIGHUPs.
  writeFileSync(
    join(appDir, "server.js"),
    `import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
let feed = { version: -1, values: {} };
let hups = 0;
process.on("SIGHUP", () => { hups++; });
async function follow() {
  let since;
  for (;;) {
    try {
      const url = process.env.HERD_CONFIG_URL + (since === undefined ? "" : "&since=" + since + "&timeoutMs=20000");
      const res = await fetch(url);
      if (res.status === 200) { feed = await res.json(); since = feed.version; }
      else await res.arrayBuffer();
    } catch { await new Promise((r) => setTimeout(r, 200)); }
  }
}
follow();
createServer((req, res) => {
  if (req.url === "/healthz") return res.end("ok");
  const file = JSON.parse(readFileSync(process.env.HERD_CONFIG_FILE, "utf8"));
  let pool;
  if (file.files["app.json"]) pool = JSON.parse(readFileSync(join(process.env.HERD_CONFIG_DIR, "app.json"), "utf8")).pool;
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ pid: process.pid, hups, file: { version: file.version, greeting: file.values.GREETING, pool }, feed: { version: feed.version, greeting: feed.values.GREETING } }));
}).listen(Number(process.env.PORT));
`,
  );
  const r = await herd.cli(["deploy", appDir], { cwd: appDir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const config = (...args: string[]) => herd.cli(["config", ...args, "--app", "cfg"], { cwd: appDir });

/** What each running instance of cfg sees now, by instance id (asked on its own port). */
async function seen(): Promise<Map<string, Seen>> {
  const { body } = await herd.api<{ items: Instance[] }>("GET", "/apps/cfg/instances");
  const running = body.items.filter((i) => i.state === "running" && i.desired === "running" && i.port);
  const out = new Map<string, Seen>();
  for (const i of running) {
    const res = await fetch(`http://127.0.0.1:${i.port}/`);
    out.set(i.id, (await res.json()) as Seen);
  }
  return out;
}

const greetings = (m: Map<string, Seen>) =>
  [...m.values()].map((s) => `${s.file.greeting}/${s.feed.greeting}`).sort();

test("a change reaches every running instance without a restart: its file and its feed", async () => {
  const before = await waitFor("4 running instances", async () => {
    const m = await seen();
    return m.size === 4 ? m : undefined;
  });
  for (const s of before.values()) assert.equal(s.file.version, 0, "no config yet: version 0");
  const set = await config("set", "GREETING=hello", "-m", "first greeting");
  assert.equal(set.code, 0, set.stdout + set.stderr);
  const after1 = await waitFor("every instance to see hello", async () => {
    const m = await seen();
    return greetings(m).every((g) => g === "hello/hello") && m.size === 4 ? m : undefined;
  });
  const appJson = join(work, "app.json");
  writeFileSync(appJson, `{"pool": 8}\n`);
  assert.equal((await config("set", "GREETING=bonjour", "--file", `app.json=${appJson}`)).code, 0);
  // The agent writes the files, then the feed, then sends the SIGHUP: the signal may come a moment after the files.
  const after2 = await waitFor(
    "every instance to see bonjour and pool 8, and its second SIGHUP",
    async () => {
      const m = await seen();
      return [...m.values()].every(
        (s) =>
          s.file.greeting === "bonjour" && s.feed.greeting === "bonjour" && s.file.pool === 8 && s.hups >= 2,
      ) && m.size === 4
        ? m
        : undefined;
    },
  );
  const events = async () => (await herd.cli(["events", "--app", "cfg"], { cwd: appDir })).stdout;
  for (const [id, s] of after2) {
    if (s.pid !== before.get(id)?.pid) assert.fail(`${id} was restarted or replaced:\n${await events()}`);
    assert.equal(s.pid, after1.get(id)?.pid);
    assert.ok(s.hups >= 2, `${id} got a SIGHUP per change (config.onChange: signal): ${s.hups}`);
  }
  const status = await config("status");
  assert.match(status.stdout, /stable v2/);
  await waitFor(
    "status to show nobody behind",
    async () => !(await config("status")).stdout.includes("behind"),
  );
});

test("a config file that does not parse is refused, and the running version is kept", async () => {
  const bad = join(work, "bad.json");
  writeFileSync(bad, `{"pool": 8,\n`);
  const r = await config("set", "--file", `app.json=${bad}`);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /app\.json: not valid JSON/);
  await sleep(2000);
  const m = await seen();
  for (const s of m.values()) {
    assert.equal(s.file.version, 2);
    assert.equal(s.file.pool, 8);
  }
  assert.match((await config("history")).stdout, /v2\s+\*/);
});

test("a gray version reaches only its share, then rolls back", async () => {
  const gray = await config("set", "GREETING=gray", "--gray", "50");
  assert.equal(gray.code, 0, gray.stdout + gray.stderr);
  assert.match(gray.stdout, /v3 is in gray release \(50% of instances\)/);
  await waitFor("half of the instances to see the gray version", async () => {
    const g = greetings(await seen());
    return (
      g.filter((x) => x === "gray/gray").length === 2 && g.filter((x) => x === "bonjour/bonjour").length === 2
    );
  });
  // It stays at its share.
  await sleep(2500);
  const g = greetings(await seen());
  assert.deepEqual(g, ["bonjour/bonjour", "bonjour/bonjour", "gray/gray", "gray/gray"]);
  const status = await config("status");
  assert.equal((status.stdout.match(/\(gray\)/g) ?? []).length, 2, status.stdout);
  const abort = await config("abort");
  assert.equal(abort.code, 0, abort.stdout + abort.stderr);
  await waitFor("every instance back on the stable version", async () => {
    const all = greetings(await seen());
    return all.length === 4 && all.every((x) => x === "bonjour/bonjour");
  });
});
