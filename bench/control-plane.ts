// bench:control-plane — the control plane with thousands of nodes (issue 16).
//
// A real server (API, store, controllers, scheduler) runs in its own process
// (control-plane-server.ts); this process simulates its agents, one per node,
// each speaking the heartbeat protocol over HTTP with its own agent token, no
// processes: a desired instance with action run is reported `healthy` in the
// next heartbeat, which comes FOLLOW_UP_MS after a reply that brought new
// instances (as the real agent's follow-up does), else every interval the
// control plane asks for (a big cluster's is longer: node-controller.ts). Like
// the real agent, each keeps the wait long poll open (GET /nodes/:name/wait)
// and heartbeats at once when it says what the node runs changed.
//
// 1. Every node checks in. 2. One scale per app (POST /apps/:app/scale) asks
//    for all the instances at once. 3. The clock stops when the heartbeat that
//    reports the last of them healthy is answered (the control plane has
//    written it running before it answers); GET /apps/:app/instances then
//    checks every one runs. Figures: instances/s (goal >= 4,000/s; Nomad's
//    C1M placed 3,750/s — a published figure, not measured here), heartbeat
//    p50/p99 during the ramp, GET /apps latency during the ramp, and the
//    control plane's CPU (% of one core) and RSS at rest over REST_S seconds
//    with every node heartbeating and every instance running. Also the
//    control plane's CPU per instance during the ramp and its store writes per
//    instance (the store file's revision, read beside it): figures that do not
//    depend on how busy the machine is.
//
// Peer in the same run: the same bench at a tenth of the size (`--peer-scale`):
// the ratio of instances/s says whether the control plane keeps its speed as
// the cluster grows ten times. HERD_ROOT=<checkout> runs another checkout's
// server (e.g. /work/main, before the informer) with this same load.
//
// `--tenants N` (default 1) adds N-1 tenants with one service each and no
// instances: the cluster then has more than one tenant, so every heartbeat
// reply carries the other nodes' ports and the bench tenant's endpoints on
// them until the agent applies them (controllers/peers.ts), as a cluster
// shared by tenants does; the simulated agents send back the version they got.
//
// Usage: node bench/control-plane.ts [--nodes 1000] [--instances 10000] [--apps 100]
//        [--peer-scale 0.1] [--rest 10] [--tenants 1] [--strict]

import http from "node:http";
import { loadavg } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { DesiredInstance, Heartbeat, HeartbeatReply, InstanceStatus } from "../src/model/protocol.ts";
import {
  cleanup,
  groupCpuSeconds,
  ROOT,
  removeOnCleanup,
  startChild,
  stopChild,
  verdict,
  verdictSummary,
} from "./harness.ts";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const NODES = arg("--nodes", 1000);
const INSTANCES = arg("--instances", 10_000);
const APPS = arg("--apps", 100);
const PEER_SCALE = arg("--peer-scale", 0.1);
const TENANTS = arg("--tenants", 1);
const REST_S = arg("--rest", 10);
const GOAL_PER_S = 4000;
const NOMAD_C1M_PER_S = 3750;
const FOLLOW_UP_MS = 150;
const RAMP_TIMEOUT_MS = 600_000;
const GiB = 1024 ** 3;

interface Run {
  nodes: number;
  instances: number;
  perSecond: number;
  rampMs: number;
  running: number;
  heartbeat: { p50: number; p99: number; max: number; count: number; failed: number };
  appsGet: { p50: number; max: number };
  rest?: { cpuPercent: number; rssMb: number; heartbeatP99: number };
  /** The control plane's CPU during the ramp, ms per instance (what a quiet machine's figure follows). */
  cpuMsPerInstance: number;
  /** Store writes (revisions) during the ramp, per instance. */
  writesPerInstance: number;
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number);
const ms = (v: number) => `${v.toFixed(1)} ms`;

function call(
  agent: http.Agent,
  base: URL,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        host: base.hostname,
        port: base.port,
        method,
        path: `/api/v1${path}`,
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          ...(data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {}),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.setTimeout(120_000, () => req.destroy(new Error(`${method} ${path}: no answer in 120 s`)));
    req.on("error", reject);
    req.end(data);
  });
}

/** One simulated agent: heartbeats as its node, reports every instance it should run as healthy. */
class SimulatedAgent {
  readonly name: string;
  readonly #token: string;
  readonly #base: URL;
  readonly #http: http.Agent;
  readonly #bench: Bench;
  /** Instance id → generation, of those told to run. */
  #running = new Map<string, number>();
  /** The peers version of the last reply that carried one (what a real agent applies and sends back). */
  #peersVersion: string | undefined;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #beating = false;
  /** The wait said something changed while a heartbeat was out: beat again after it. */
  #again = false;

  constructor(name: string, token: string, base: URL, httpAgent: http.Agent, bench: Bench) {
    this.name = name;
    this.#token = token;
    this.#base = base;
    this.#http = httpAgent;
    this.#bench = bench;
  }

  start(delayMs: number): void {
    this.#timer = setTimeout(() => void this.#beat(), delayMs);
    setTimeout(() => void this.#follow(), delayMs);
  }

  /** The agent's long poll: a change for this node makes it heartbeat at once (agent.ts #followChanges). */
  async #follow(): Promise<void> {
    let since: number | undefined;
    while (!this.#stopped) {
      try {
        const path = `/nodes/${this.name}/wait${since === undefined ? "" : `?since=${since}`}`;
        const res = await call(this.#http, this.#base, "GET", path, this.#token);
        if (res.status !== 200) throw new Error(`wait ${res.status}: ${res.body.slice(0, 200)}`);
        const { revision } = JSON.parse(res.body) as { revision: number };
        if (since !== undefined && revision > since) this.#wake();
        since = revision;
      } catch {
        if (!this.#stopped) await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  #wake(): void {
    if (this.#stopped) return;
    if (this.#beating) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    void this.#beat();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #beat(): Promise<void> {
    if (this.#stopped) return;
    this.#beating = true;
    this.#again = false;
    const reported = [...this.#running].map(
      ([id, generation], n): InstanceStatus => ({
        id,
        generation,
        state: "healthy",
        pid: 10_000 + n,
        port: 20_000 + n,
        startedAt: this.#bench.startedAt,
      }),
    );
    const hb: Heartbeat = {
      address: "127.0.0.1",
      labels: { zone: `z${Number(this.name.slice(4)) % 3}` },
      capacity: { cpu: 16, memory: 32 * GiB },
      allocatable: { cpu: 16, memory: 32 * GiB },
      agentVersion: "bench",
      // As a production node reports it (no isolation warnings to record).
      isolation: { cgroups: "v2", sandbox: "uid", network: "nftables" },
      instances: reported,
      ...(this.#peersVersion ? { peersVersion: this.#peersVersion } : {}),
    };
    const t0 = performance.now();
    let next = 1000;
    try {
      const res = await call(
        this.#http,
        this.#base,
        "POST",
        `/nodes/${this.name}/heartbeat`,
        this.#token,
        hb,
      );
      const took = performance.now() - t0;
      if (res.status !== 200) throw new Error(`heartbeat ${res.status}: ${res.body.slice(0, 200)}`);
      const reply = JSON.parse(res.body) as HeartbeatReply;
      this.#bench.heartbeat(this.name, took, reported);
      next = reply.intervalMs;
      if (reply.peers) this.#peersVersion = reply.peers.version;
      const desired = new Map<string, DesiredInstance>();
      for (const d of reply.instances) if (d.action === "run") desired.set(d.id, d);
      let fresh = false;
      for (const [id, d] of desired) {
        if (this.#running.get(id) !== d.generation) {
          this.#running.set(id, d.generation);
          fresh = true;
        }
      }
      for (const id of this.#running.keys()) if (!desired.has(id)) this.#running.delete(id);
      if (fresh) next = FOLLOW_UP_MS;
    } catch (err) {
      this.#bench.failed(this.name, err as Error);
    }
    this.#beating = false;
    if (this.#again) next = 0;
    if (!this.#stopped) this.#timer = setTimeout(() => void this.#beat(), next);
  }
}

/** The figures of one run, fed by its agents. */
class Bench {
  readonly startedAt = new Date().toISOString();
  /** Heartbeat round trips (ms) since `measureFrom`. */
  latencies: number[] = [];
  failures = 0;
  lastError = "";
  /** Instances reported healthy in an answered heartbeat. */
  readonly healthy = new Set<string>();
  registered = new Set<string>();
  onHealthy: (() => void) | undefined;

  heartbeat(node: string, took: number, reported: InstanceStatus[]): void {
    this.registered.add(node);
    this.latencies.push(took);
    for (const s of reported) this.healthy.add(s.id);
    this.onHealthy?.();
  }

  failed(_node: string, err: Error): void {
    this.failures++;
    this.lastError = err.message;
  }
}

async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function runOnce(nodes: number, instances: number, apps: number, rest: boolean): Promise<Run> {
  const child = startChild("control plane", process.execPath, [
    join(ROOT, "bench/control-plane-server.ts"),
    "--nodes",
    String(nodes),
    "--apps",
    String(apps),
    "--tenants",
    String(TENANTS),
  ]);
  // Its first line (the tokens: longer than the output the harness keeps).
  let first = "";
  child.process.stdout?.on("data", (chunk: Buffer) => {
    if (!first.includes("\n")) first += chunk.toString();
  });
  try {
    await waitUntil(() => first.includes("\n") || child.process.exitCode !== null, 120_000, "server start");
    const line = first.split("\n").find((l) => l.startsWith("{"));
    if (!line) throw new Error(`the control plane did not start:\n${child.output}`);
    const started = JSON.parse(line) as {
      dir: string;
      url: string;
      admin: string;
      tokens: Record<string, string>;
      pid: number;
    };
    // Removed by the server when it stops; also here, in case it had to be killed.
    removeOnCleanup(started.dir);
    const base = new URL(started.url);
    // A connection pool per agent, as each real agent has its own (its wait and its heartbeat:
    // two kept-alive connections), not one pool that opens hundreds of connections in a burst.
    const pools: http.Agent[] = [];
    // A connection per call: a kept-alive one the server closed while idle would reset the next call.
    const admin = new http.Agent({ keepAlive: false });
    const bench = new Bench();
    const agents = Object.entries(started.tokens).map(([name, token]) => {
      const pool = new http.Agent({ keepAlive: true });
      pools.push(pool);
      return new SimulatedAgent(name, token, base, pool, bench);
    });
    try {
      agents.forEach((a, n) => {
        a.start((n / agents.length) * 1000);
      });
      await waitUntil(() => bench.registered.size === nodes, 300_000, `${nodes} nodes checking in`);
      console.log(`  ${nodes} nodes checked in`);
      // One more full interval, so that every node is written ready.
      await new Promise((r) => setTimeout(r, 1500));

      const per = Math.floor(instances / apps);
      const ids = new Set<string>();
      let done: () => void = () => {};
      const finished = new Promise<void>((r) => {
        done = r;
      });
      bench.latencies = [];
      const appsGet: number[] = [];
      const storeRevision = () => {
        // Read-only, beside the server: its store's revision counts every write it made.
        const db = new DatabaseSync(join(started.dir, "state.db"), { readOnly: true });
        try {
          return (db.prepare("SELECT value FROM meta WHERE name = 'revision'").get() as { value: number })
            .value;
        } finally {
          db.close();
        }
      };
      // The scale calls go over connections opened before the clock starts, one per call, as API
      // clients that are already connected: Node accepts one new connection per listening socket per
      // turn of its event loop (the API listens on 8: api/acceptors.ts), and once the first services
      // are placed, their nodes' heartbeats make every turn long, so calls on new connections got in
      // over 1-4 s or at once, by chance, and the figure timed that race (2,400-5,500/s), not placement.
      const scalers = new http.Agent({ keepAlive: true });
      await Promise.all(
        Array.from({ length: apps }, () => call(scalers, base, "GET", "/apps?tenant=bench", started.admin)),
      );
      const revision0 = storeRevision();
      const rampCpu0 = groupCpuSeconds(started.pid);
      const profiling = Boolean(process.env.HERD_BENCH_PROFILE);
      if (profiling) process.kill(started.pid, "SIGUSR2");
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: apps }, async (_, a) => {
          const res = await call(scalers, base, "POST", `/apps/app${a}/scale?tenant=bench`, started.admin, {
            services: { web: a < apps - 1 ? per : instances - per * (apps - 1) },
          });
          if (res.status !== 200) throw new Error(`scale app${a}: ${res.status} ${res.body.slice(0, 300)}`);
        }),
      );
      const scaledMs = performance.now() - t0;
      scalers.destroy();
      // Which instances exist is learned from the agents' replies; the clock stops when all are healthy.
      let tEnd = 0;
      bench.onHealthy = () => {
        if (bench.healthy.size >= instances && tEnd === 0) {
          tEnd = performance.now();
          done();
        }
      };
      // Progress every 10 s, for long runs on a busy machine.
      const progress = setInterval(() => {
        const s = ((performance.now() - t0) / 1000).toFixed(0);
        console.log(`  ${s} s: ${bench.healthy.size} of ${instances} reported healthy`);
      }, 10_000);
      void finished.then(() => clearInterval(progress));
      // GET /apps while the ramp goes on: the API must keep answering.
      const probe = (async () => {
        while (tEnd === 0 && performance.now() - t0 < RAMP_TIMEOUT_MS) {
          const s = performance.now();
          // A request that times out counts as its 120 s.
          await call(admin, base, "GET", "/apps?tenant=bench", started.admin).catch(() => {});
          appsGet.push(performance.now() - s);
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      let rampTimer: NodeJS.Timeout | undefined;
      await Promise.race([finished, new Promise((r) => (rampTimer = setTimeout(r, RAMP_TIMEOUT_MS)))]);
      // Else it would hold the process open for the rest of RAMP_TIMEOUT_MS after the verdicts.
      clearTimeout(rampTimer);
      if (profiling) process.kill(started.pid, "SIGUSR2");
      const rampCpu = groupCpuSeconds(started.pid) - rampCpu0;
      const rampWrites = storeRevision() - revision0;
      await probe;
      clearInterval(progress);
      const rampMs = (tEnd || performance.now()) - t0;
      const latencies = [...bench.latencies].sort((x, y) => x - y);
      // Check through the API that every instance runs.
      let running = 0;
      for (let a = 0; a < apps; a++) {
        const res = await call(admin, base, "GET", `/apps/app${a}/instances?tenant=bench`, started.admin);
        const list = (JSON.parse(res.body) as { items: { id: string; state: string }[] }).items;
        for (const i of list) {
          ids.add(i.id);
          if (i.state === "running") running++;
        }
      }
      const appsSorted = [...appsGet].sort((x, y) => x - y);
      const out: Run = {
        nodes,
        instances,
        perSecond: tEnd ? instances / (rampMs / 1000) : 0,
        rampMs,
        running,
        heartbeat: {
          p50: percentile(latencies, 0.5),
          p99: percentile(latencies, 0.99),
          max: latencies.at(-1) ?? Number.NaN,
          count: latencies.length,
          failed: bench.failures,
        },
        appsGet: { p50: percentile(appsSorted, 0.5), max: appsSorted.at(-1) ?? Number.NaN },
        cpuMsPerInstance: (rampCpu * 1000) / instances,
        writesPerInstance: rampWrites / instances,
      };
      console.log(
        `  ${nodes} nodes, ${instances} instances: scale calls answered in ${ms(scaledMs)}, all healthy after ${ms(rampMs)}; ${running} running per the API${bench.failures ? `; ${bench.failures} heartbeats failed (${bench.lastError})` : ""}`,
      );
      if (rest) {
        // At rest: nothing to do but heartbeats. Let the last writes settle first.
        await new Promise((r) => setTimeout(r, 5000));
        bench.latencies = [];
        const cpu0 = groupCpuSeconds(started.pid);
        const w0 = performance.now();
        await new Promise((r) => setTimeout(r, REST_S * 1000));
        const cpu = groupCpuSeconds(started.pid) - cpu0;
        const wall = (performance.now() - w0) / 1000;
        const status = await import("node:fs").then((fs) =>
          fs.readFileSync(`/proc/${started.pid}/status`, "utf8"),
        );
        const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
        const restLat = [...bench.latencies].sort((x, y) => x - y);
        out.rest = { cpuPercent: (cpu / wall) * 100, rssMb: rss, heartbeatP99: percentile(restLat, 0.99) };
      }
      return out;
    } finally {
      for (const a of agents) a.stop();
      for (const pool of pools) pool.destroy();
      admin.destroy();
    }
  } finally {
    // A profiling server writes its profile first (seconds, for a long run on a busy machine).
    await stopChild(child, process.env.HERD_BENCH_PROFILE ? 60_000 : 3000);
  }
}

async function main(): Promise<void> {
  const load = () =>
    loadavg()
      .map((l) => l.toFixed(2))
      .join(" ");
  console.log(
    `bench:control-plane — ${NODES} nodes, ${INSTANCES} instances in ${APPS} apps` +
      `${TENANTS > 1 ? `, ${TENANTS - 1} other tenant(s) with a service each` : ""}; load ${load()}`,
  );
  if (process.env.HERD_ROOT) console.log(`  control plane from ${process.env.HERD_ROOT}`);
  const small = Math.max(1, Math.round(NODES * PEER_SCALE));
  const smallInstances = Math.max(1, Math.round(INSTANCES * PEER_SCALE));
  const smallApps = Math.max(1, Math.round(APPS * PEER_SCALE));
  console.log(`peer: the same at ${PEER_SCALE}x`);
  const peer = await runOnce(small, smallInstances, smallApps, false);
  console.log(`full size (load ${load()})`);
  const full = await runOnce(NODES, INSTANCES, APPS, true);
  console.log(`load after: ${load()}`);
  const allRan = (r: Run) =>
    r.running < r.instances ? `${r.instances - r.running} of ${r.instances} not running` : false;
  console.log("");
  console.log(
    `instances/s until running: ${full.perSecond.toFixed(0)}/s (${full.instances} onto ${full.nodes} nodes in ${(full.rampMs / 1000).toFixed(2)} s)`,
  );
  console.log(
    `  peer (${peer.instances} onto ${peer.nodes} nodes, same run): ${peer.perSecond.toFixed(0)}/s; full/peer ${(full.perSecond / peer.perSecond).toFixed(2)}x`,
  );
  console.log(
    `  goal ${GOAL_PER_S}/s: ${(full.perSecond / GOAL_PER_S).toFixed(2)}x; Nomad C1M's published ${NOMAD_C1M_PER_S}/s (placed, not measured here): ${(full.perSecond / NOMAD_C1M_PER_S).toFixed(2)}x`,
  );
  console.log(
    `control plane during the ramp: ${full.cpuMsPerInstance.toFixed(2)} ms CPU and ${full.writesPerInstance.toFixed(2)} store writes per instance; peer ${peer.cpuMsPerInstance.toFixed(2)} ms, ${peer.writesPerInstance.toFixed(2)} writes`,
  );
  console.log(
    `heartbeat during the ramp: p50 ${ms(full.heartbeat.p50)}, p99 ${ms(full.heartbeat.p99)}, max ${ms(full.heartbeat.max)} (${full.heartbeat.count} heartbeats, ${full.heartbeat.failed} failed); peer p99 ${ms(peer.heartbeat.p99)}`,
  );
  console.log(
    `GET /apps during the ramp: p50 ${ms(full.appsGet.p50)}, max ${ms(full.appsGet.max)}; peer max ${ms(peer.appsGet.max)}`,
  );
  if (full.rest) {
    console.log(
      `at rest (${full.nodes} nodes heartbeating, ${full.running} instances running, ${REST_S} s): CPU ${full.rest.cpuPercent.toFixed(1)}% of one core, RSS ${full.rest.rssMb.toFixed(0)} MB, heartbeat p99 ${ms(full.rest.heartbeatP99)}`,
    );
  }
  console.log("");
  const notDone = allRan(full) || (full.heartbeat.failed > 0 && `${full.heartbeat.failed} heartbeats failed`);
  console.log(
    `instances/s >= ${GOAL_PER_S}: ${verdict(`instances/s >= ${GOAL_PER_S}`, full.perSecond >= GOAL_PER_S, notDone)}`,
  );
  console.log(
    `GET /apps under 1 s during the ramp: ${verdict("GET /apps under 1 s during the ramp", full.appsGet.max < 1000, notDone)}`,
  );
  process.exitCode = verdictSummary("bench:control-plane");
}

try {
  await main();
} finally {
  await cleanup();
}
