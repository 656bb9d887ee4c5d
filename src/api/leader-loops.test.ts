import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { type EtcdCluster, startEtcdCluster } from "../store/etcd-cluster.ts";
import { LeaderLoops } from "./leader-loops.ts";

const ALL = ["alerts", "dependency drift", "certificates", "artifact collection", "add-on sync"].sort();

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

/** The server running the leader loops now; fails when two run them, or one runs them without leading. */
function runner(servers: RunningServer[]): RunningServer | undefined {
  const running = servers.filter((s) => s.leaderLoops.running().length > 0);
  assert.ok(running.length <= 1, "two servers run the leader loops at once");
  const r = running[0];
  if (r) {
    assert.equal(r.leadership.leading, true, "a server runs the leader loops without leading");
    assert.deepEqual(r.leaderLoops.running().sort(), ALL);
  }
  return r;
}

/** Checks `runner` every 25 ms for `ms`; returns the runner at the end. */
async function watchRunner(servers: RunningServer[], ms: number): Promise<RunningServer | undefined> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    runner(servers);
    await new Promise((r) => setTimeout(r, 25));
  }
  return runner(servers);
}

test("two servers on etcd: only the leader runs the alert evaluator, drift checker, certificates, artifact collection and add-on sync; a new leader takes them over", async () => {
  const store = `etcd://${cluster.endpoints[0].replace("http://", "")}/loops-${process.pid}/`;
  const a = await server(store);
  await until("the first server runs the loops", () => runner([a]) === a);
  // A second one campaigns: never both run the loops (on a loaded machine the leadership may move).
  const b = await server(store, dirs[0]);
  const first = await watchRunner([a, b], 2500);
  assert.ok(first, "one of the two runs the leader loops");
  const other = first === a ? b : a;
  assert.deepEqual(other.leaderLoops.running(), []);

  // The one running them goes (a clean close hands over at once): the other takes every loop.
  await first.close();
  servers.splice(servers.indexOf(first), 1);
  await until("the other server runs the loops", () => runner([other]) === other);

  // A third server joins: still one runner of each loop.
  const c = await server(store, dirs[0]);
  const now = await watchRunner([other, c], 2500);
  assert.ok(now, "one of the two runs the leader loops");
  assert.deepEqual((now === c ? other : c).leaderLoops.running(), []);
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
