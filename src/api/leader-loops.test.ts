import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type EtcdCluster, startEtcdCluster } from "../store/etcd-cluster.ts";
import { LeaderLoops } from "./leader-loops.ts";
import { type RunningServer, startServer } from "./server.ts";

const ALL = ["alerts", "dependency drift", "certificates", "add-on sync"].sort();

async function until(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("leader loops: start with the term, stop with it, start again; a loop added mid-term starts at once", async () => {
  const seen: string[] = [];
  const loop = (name: string) => ({
    start: () => void seen.push(`start ${name}`),
    stop: async () => void seen.push(`stop ${name}`),
  });
  const loops = new LeaderLoops(silentLogger);
  loops.add("a", loop("a"));
  assert.deepEqual(loops.running(), []);
  loops.start();
  loops.add("b", loop("b"));
  assert.deepEqual(loops.running(), ["a", "b"]);
  await loops.stop();
  assert.deepEqual(loops.running(), []);
  loops.start();
  assert.deepEqual(seen, ["start a", "start b", "stop a", "stop b", "start a", "start b"]);
  assert.throws(() => loops.add("a", loop("a")), /added twice/);
  await loops.stop();
});

let cluster: EtcdCluster;
const dirs: string[] = [];
const servers: RunningServer[] = [];
before(async () => {
  cluster = await startEtcdCluster(1);
});
after(async () => {
  for (const s of servers) await s.close().catch(() => {});
  await cluster?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function server(store: string, keyFrom?: string): Promise<RunningServer> {
  const dir = mkdtempSync(join(tmpdir(), "herd-leader-loops-"));
  dirs.push(dir);
  if (keyFrom) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    copyFileSync(join(keyFrom, "secrets.key"), join(dir, "secrets.key"));
  }
  const s = await startServer({ dataDir: dir, port: 0, logger: silentLogger, store, leaseTtlSeconds: 2 });
  servers.push(s);
  return Object.assign(s, { dir });
}

test("two servers on etcd: only the leader runs the alert evaluator, drift checker, certificates and add-on sync; a new leader takes them over", async () => {
  const store = `etcd://${cluster.endpoints[0].replace("http://", "")}/loops-${process.pid}/`;
  const a = await server(store);
  await until("the first server runs the loops", () => a.leaderLoops.running().length > 0);
  const b = await server(store, dirs[0]);
  assert.deepEqual(a.leaderLoops.running().sort(), ALL);
  // The second one campaigns for a while and stays a follower running none of them.
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(b.leadership.leading, false);
  assert.deepEqual(b.leaderLoops.running(), []);

  // The leader goes (a clean close hands over at once): the other takes every loop.
  await a.close();
  servers.splice(servers.indexOf(a), 1);
  await until("the second server runs the loops", () => b.leaderLoops.running().length > 0);
  assert.equal(b.leadership.leading, true);
  assert.deepEqual(b.leaderLoops.running().sort(), ALL);

  // A third server joins as a follower: still one runner of each loop.
  const c = await server(store, dirs[0]);
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal(c.leadership.leading, false);
  assert.deepEqual(c.leaderLoops.running(), []);
  assert.deepEqual(b.leaderLoops.running().sort(), ALL);
});

test("one server on SQLite runs every leader loop from start to close", async () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-leader-loops-"));
  dirs.push(dir);
  const s = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  try {
    assert.equal(s.leadership.leading, true);
    assert.deepEqual(s.leaderLoops.running().sort(), ALL);
  } finally {
    await s.close();
  }
  assert.deepEqual(s.leaderLoops.running(), []);
});
