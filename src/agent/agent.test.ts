import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, type TestContext, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../common/log.ts";
import type {
  DesiredInstance,
  Heartbeat,
  HeartbeatReply,
  InstanceStatus,
  LogBatch,
  LogLine,
  Peers,
} from "../model/protocol.ts";
import { Agent, type AgentOptions } from "./agent.ts";
import { detectCgroups, removeHerdCgroups } from "./cgroups.ts";
import { get, processAlive, waitFor } from "./driver.case.test.ts";
import { parseHeartbeatReply } from "./heartbeat-reply.ts";
import { ProcessDriver } from "./process-driver.ts";

// The agents here start instances in herd's cgroups (made as their drivers start): the empty parents go at the end.
after(() => removeHerdCgroups(detectCgroups()));

const TOKEN = "agent-secret";

/** A stand-in for the control plane: serves one slug, answers heartbeats from `desired`, collects logs. */
interface ControlPlane {
  url: string;
  desired: DesiredInstance[];
  heartbeats: Heartbeat[];
  logLines: string[];
  /** Every line taken, with its stream. */
  shipped: LogLine[];
  /** Statuses to answer log posts with (front first) before taking them; e.g. 429. */
  logRefusals: number[];
  /** Log posts seen, taken or not. */
  logPosts: number;
  /** Bumped by `changed()`: the revision the node's wait (GET /nodes/node1/wait) answers with. */
  revision: number;
  /** Ends the open waits: what the node runs changed (a placement). */
  changed(): void;
  /** Waits answered. */
  waits: number;
  /** The floor on the heartbeat interval the replies set (a big cluster's), if any. */
  minIntervalMs?: number;
  /** Pet volumes the replies name for discarding. */
  discardVolumes?: string[];
  /** The other nodes' ports the replies carry (sent only to a heartbeat naming another version, as the server does). */
  peers?: Peers;
  /** When set, heartbeats are refused with 401 and this body (the API's error JSON). */
  refusal?: { code: string; message: string };
  server: Server;
}

/** One test's world (setUp): its data dir, the control plane serving its slug, and its agents. */
interface World {
  dataDir: string;
  digest: string;
  cp: ControlPlane;
  /** An agent "node1" of `cp` on `dataDir`, with `options` added; stopped after the test. */
  newAgent(options?: Partial<AgentOptions>): Agent;
}

/**
 * A temp dir, a slug of `appOf(root)` (examples/hello by default) and a control
 * plane serving it. After the test: its agents stopped, the instances they left
 * running (by design) ended by a driver on the same records, and all of it removed.
 */
async function setUp(
  t: TestContext,
  name: string,
  appOf: (root: string) => string = () => join(import.meta.dirname, "../../examples/hello"),
): Promise<World> {
  const root = mkdtempSync(join(tmpdir(), `herd-agent-${name}-`));
  const dataDir = join(root, "data");
  const agents: Agent[] = [];
  let cp: ControlPlane | undefined;
  t.after(async () => {
    for (const a of agents) await a.stop();
    const cleaner = new ProcessDriver({ stateRoot: join(dataDir, "driver") });
    try {
      for (const p of await cleaner.recover()) {
        await cleaner.stop(p.id, 0);
        await cleaner.remove(p.id);
      }
    } finally {
      cleaner.close();
      cp?.server.closeAllConnections();
      cp?.server.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
  const slugFile = join(root, "slug.tar.gz");
  execFileSync("tar", ["-czf", slugFile, "-C", appOf(root), "."]);
  const digest = createHash("sha256").update(readFileSync(slugFile)).digest("hex");
  const served = await startControlPlane(slugFile, digest);
  cp = served;
  return {
    dataDir,
    digest,
    cp: served,
    newAgent: (options = {}) => {
      const agent = new Agent({ server: served.url, token: TOKEN, name: "node1", dataDir, ...options });
      agents.push(agent);
      return agent;
    },
  };
}

async function startControlPlane(slugFile: string, digest: string): Promise<ControlPlane> {
  const cp: ControlPlane = {
    url: "",
    desired: [],
    heartbeats: [],
    logLines: [],
    shipped: [],
    logRefusals: [],
    logPosts: 0,
    revision: 1,
    waits: 0,
    changed: () => {
      cp.revision++;
      for (const answer of waiting.splice(0)) answer();
    },
    server: createServer(),
  };
  const waiting: (() => void)[] = [];
  cp.server.on("request", async (req, res) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401).end();
      return;
    }
    if (req.method === "POST" && req.url === "/api/v1/nodes/node1/heartbeat" && cp.refusal) {
      res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify(cp.refusal));
    } else if (req.method === "POST" && req.url === "/api/v1/nodes/node1/heartbeat") {
      cp.heartbeats.push(JSON.parse(await readBody(req)) as Heartbeat);
      const reply: HeartbeatReply = {
        instances: cp.desired,
        intervalMs: 1000,
        ingestTokens: { default: "ingest-secret" },
        ...(cp.minIntervalMs ? { minIntervalMs: cp.minIntervalMs } : {}),
        ...(cp.discardVolumes ? { discardVolumes: cp.discardVolumes } : {}),
        ...(cp.peers && cp.heartbeats.at(-1)?.peersVersion !== cp.peers.version ? { peers: cp.peers } : {}),
      };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(reply));
    } else if (req.method === "GET" && req.url?.startsWith("/api/v1/nodes/node1/wait")) {
      const since = Number(new URL(req.url, "http://x").searchParams.get("since") ?? Number.NaN);
      const answer = () => {
        cp.waits++;
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ revision: cp.revision }));
      };
      if (Number.isNaN(since) || cp.revision > since) answer();
      else waiting.push(answer);
    } else if (req.method === "GET" && req.url === `/api/v1/slugs/${digest}`) {
      res.writeHead(200, { "content-type": "application/gzip" }).end(readFileSync(slugFile));
    } else if (req.method === "POST" && req.url === "/api/v1/logs") {
      const batch = JSON.parse(await readBody(req)) as LogBatch;
      cp.logPosts++;
      const refusal = cp.logRefusals.shift();
      if (refusal) {
        res.writeHead(refusal, { "retry-after": "1", "content-type": "application/json" }).end("{}");
        return;
      }
      for (const l of batch.lines) cp.logLines.push(`${l.instance} ${l.line}`);
      cp.shipped.push(...batch.lines);
      res.writeHead(204).end();
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => cp.server.listen(0, "127.0.0.1", resolve));
  const address = cp.server.address();
  cp.url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  return cp;
}

async function readBody(req: IncomingMessage): Promise<string> {
  let body = "";
  for await (const chunk of req) body += chunk;
  return body;
}

function desiredHello(
  id: string,
  digest: string,
  generation: number,
  action: "run" | "stop" = "run",
): DesiredInstance {
  return {
    id,
    app: "hello",
    service: "web",
    tenant: "default",
    release: 1,
    mode: "cattle",
    generation,
    action,
    run: {
      slug: digest,
      command: "node server.js",
      // The service's own OTEL settings win over the agent's defaults.
      env: { GREETING: "hi", OTEL_SERVICE_NAME: "shop-web", OTEL_RESOURCE_ATTRIBUTES: "team=a" },
      secrets: { DB_PASSWORD: { secret: "db-password", version: 1 } },
      resources: { cpu: 0.25, memory: 128 * 1024 * 1024 },
      health: {
        kind: "http",
        path: "/healthz",
        intervalMs: 200,
        timeoutMs: 1000,
        failures: 3,
        startupMs: 30_000,
      },
    },
    ...(action === "run" ? { secretEnv: { DB_PASSWORD: SECRET_VALUE } } : {}),
  };
}

/** A secret's value: in the process's env, never in a file of the agent. */
const SECRET_VALUE = "pw-in-env-only-5d1e";

/** The environment of a live process. */
function environOf(pid: number): Map<string, string> {
  return new Map(
    readFileSync(`/proc/${pid}/environ`, "utf8")
      .split("\0")
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
}

/** The status of id in the newest heartbeat that satisfies check. */
function reported(cp: ControlPlane, id: string, check: (s: InstanceStatus) => boolean, what: string) {
  return waitFor(() => {
    const s = cp.heartbeats.at(-1)?.instances.find((i) => i.id === id);
    return s && check(s) ? s : undefined;
  }, what);
}

/** Pids of live processes whose environment says they are this instance. */
function processesOf(id: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (env.includes(`HERD_INSTANCE=${id}`) && processAlive(Number(entry))) pids.push(Number(entry));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

test("the agent runs, restarts, stops and removes instances as the heartbeat replies say, and a new agent adopts them", async (t) => {
  const world = await setUp(t, "run");
  const { cp, digest, dataDir } = world;
  const newAgent = () =>
    world.newAgent({
      heartbeatMs: 200,
      logger: process.env.DEBUG_AGENT ? createLogger("test", "debug") : undefined,
    });

  const agent = newAgent();
  await agent.start();
  const first =
    cp.heartbeats.length > 0 ? cp.heartbeats[0] : await waitFor(() => cp!.heartbeats[0], "a heartbeat");
  assert.ok(first.capacity.cpu >= 1 && first.capacity.memory > 0);
  assert.ok(["v1", "v2", "none"].includes(first.isolation.cgroups));
  // The machine's own figures ride along (this is Linux: /proc and statfs are there).
  assert.ok((first.stats?.cpuSeconds?.idle ?? 0) > 0, JSON.stringify(first.stats));
  assert.ok((first.stats?.memory?.totalBytes ?? 0) > 0);
  assert.ok((first.stats?.disk?.totalBytes ?? 0) > 0);

  // run → up → healthy, on a port that answers.
  cp.desired = [desiredHello("inst1", digest, 1)];
  const healthy = await reported(cp, "inst1", (s) => s.state === "healthy", "inst1 healthy");
  assert.equal(healthy.generation, 1);
  assert.ok(healthy.port && healthy.pid);
  assert.equal(await get(healthy.port), "hi from inst1 (release 1)\n");
  assert.ok(cp.heartbeats.some((h) => h.instances.some((i) => i.id === "inst1" && i.state === "up")));
  assert.ok(existsSync(join(dataDir, "instances", "inst1", "data")));
  assert.equal(typeof healthy.usage?.cpuSeconds, "number", "a running instance's usage is reported");
  // OTEL defaults point the app's SDK at the control plane's ingest (relayed); the service's own values win.
  const env = environOf(healthy.pid!);
  // Secret values reach the process, and no file: instance.json keeps only their names.
  assert.equal(env.get("DB_PASSWORD"), SECRET_VALUE);
  const saved = readFileSync(join(dataDir, "instances", "inst1", "instance.json"), "utf8");
  assert.ok(!saved.includes(SECRET_VALUE) && saved.includes("db-password"), saved);
  assert.equal(env.get("OTEL_SERVICE_NAME"), "shop-web");
  assert.equal(
    env.get("OTEL_RESOURCE_ATTRIBUTES"),
    "team=a,herd.tenant=default,herd.app=hello,herd.service=web,herd.instance=inst1",
  );
  // Through the agent's telemetry relay (the API's port is closed to instances), on the port it keeps.
  const relay = JSON.parse(readFileSync(join(dataDir, "relay.json"), "utf8")) as { port: number };
  assert.equal(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"), `http://127.0.0.1:${relay.port}/api/v1/otlp`);
  assert.equal(env.get("OTEL_EXPORTER_OTLP_HEADERS"), "authorization=Bearer%20ingest-secret");
  assert.equal(env.get("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf");
  await waitFor(
    () => cp!.logLines.includes(`inst1 hello listening on ${healthy.port}`) || undefined,
    "shipped log",
  );

  // A crash is reported with the last lines, and stays exited at the same generation.
  process.kill(healthy.pid, "SIGKILL");
  const exited = await reported(cp, "inst1", (s) => s.state === "exited", "inst1 exited");
  assert.ok(exited.logTail?.includes(`hello listening on ${healthy.port}`), String(exited.logTail));
  await sleep(600);
  assert.equal(cp.heartbeats.at(-1)?.instances.find((i) => i.id === "inst1")?.state, "exited");
  // What it left behind got SIGKILL when it exited; on a busy machine dying takes a moment.
  await waitFor(() => (processesOf("inst1").length === 0 ? true : undefined), "inst1's leftovers gone");

  // A higher generation restarts it in place.
  cp.desired = [desiredHello("inst1", digest, 2)];
  const restarted = await reported(
    cp,
    "inst1",
    (s) => s.state === "healthy" && s.generation === 2,
    "inst1 gen 2 healthy",
  );
  assert.notEqual(restarted.pid, healthy.pid);
  assert.equal(await get(restarted.port!), "hi from inst1 (release 1)\n");

  // stop → stopped, process gone.
  cp.desired = [desiredHello("inst1", digest, 2, "stop")];
  await reported(cp, "inst1", (s) => s.state === "stopped", "inst1 stopped");
  assert.ok(!processAlive(restarted.pid!));
  await waitFor(() => (processesOf("inst1").length === 0 ? true : undefined), "inst1's processes gone");

  // Gone from the reply → removed with its dirs.
  cp.desired = [];
  await waitFor(() => (cp!.heartbeats.at(-1)?.instances.length === 0 ? true : undefined), "inst1 removed");
  assert.ok(!existsSync(join(dataDir, "instances", "inst1")));

  // A second agent on the same dataDir adopts what the first left running.
  cp.desired = [desiredHello("inst2", digest, 1)];
  const before = await reported(cp, "inst2", (s) => s.state === "healthy", "inst2 healthy");
  await agent.stop();
  assert.equal(await get(before.port!), "hi from inst2 (release 1)\n");
  const runningBefore = processesOf("inst2").sort();
  assert.ok(runningBefore.includes(before.pid!));
  const seen = cp.heartbeats.length;
  const second = newAgent();
  await second.start();
  const adopted = await waitFor(() => {
    const s = cp!.heartbeats
      .slice(seen)
      .findLast((h) => h.instances.some((i) => i.id === "inst2" && i.state === "healthy"));
    return s?.instances.find((i) => i.id === "inst2");
  }, "inst2 adopted and healthy");
  assert.equal(adopted.pid, before.pid);
  assert.equal(adopted.port, before.port);
  assert.equal(adopted.generation, 1);
  await sleep(400);
  assert.deepEqual(processesOf("inst2").sort(), runningBefore, "the second agent started another copy");
  assert.equal(await get(before.port!), "hi from inst2 (release 1)\n");

  // A restart of an adopted instance takes the secret values from the current reply.
  cp.desired = [desiredHello("inst2", digest, 2)];
  const again = await reported(
    cp,
    "inst2",
    (s) => s.state === "healthy" && s.generation === 2,
    "inst2 gen 2",
  );
  assert.equal(environOf(again.pid!).get("DB_PASSWORD"), SECRET_VALUE);

  // The adopted instance is still the agent's to remove.
  cp.desired = [];
  await waitFor(() => (processesOf("inst2").length === 0 ? true : undefined), "inst2 gone");
  await second.stop();
});

test("a heartbeat reply with a bad field is rejected with the field named", () => {
  assert.throws(
    () => parseHeartbeatReply({ instances: [{ id: "../x" }], intervalMs: 1000 }),
    /instances\.0\.id/,
  );
  assert.throws(() => parseHeartbeatReply({ instances: "no" }), /instances: not an array/);
  const withSecrets = { ...desiredHello("i1", "d", 1), secretEnv: { DB_PASSWORD: 42 } };
  assert.throws(
    () => parseHeartbeatReply({ instances: [withSecrets], intervalMs: 1000 }),
    /instances\.0\.secretEnv: not a map of strings/,
  );
  assert.throws(
    () => parseHeartbeatReply({ instances: [], intervalMs: 1000, ingestTokens: { acme: 7 } }),
    /ingestTokens: not an object of strings/,
  );
  assert.throws(
    () => parseHeartbeatReply({ instances: [], intervalMs: 1000, services: { acme: ["a/web", 3] } }),
    /services: not an object of string lists/,
  );
  assert.throws(
    () => parseHeartbeatReply({ instances: [], intervalMs: 1000, minIntervalMs: "5s" }),
    /minIntervalMs: not a number/,
  );
  // A volume to discard is a safe id: never a path out of volumes/.
  assert.throws(
    () => parseHeartbeatReply({ instances: [], intervalMs: 1000, discardVolumes: ["../instances"] }),
    /discardVolumes: not a list of safe instance ids/,
  );
  assert.equal(
    parseHeartbeatReply({ instances: [], intervalMs: 5000, minIntervalMs: 5000 }).minIntervalMs,
    5000,
  );
  assert.deepEqual(
    parseHeartbeatReply({ instances: [], intervalMs: 1000, services: { acme: ["a/web"] } }).services,
    { acme: ["a/web"] },
  );
  const hello = desiredHello("i1", "d", 1);
  assert.throws(
    () =>
      parseHeartbeatReply({
        instances: [{ ...hello, run: { ...hello.run, image: "-v /:/host" } }],
        intervalMs: 1000,
      }),
    /instances\.0\.run\.image: not an image reference/,
  );
  assert.throws(
    () =>
      parseHeartbeatReply({
        instances: [{ ...hello, run: { ...hello.run, runtime: "vm" } }],
        intervalMs: 1000,
      }),
    /instances\.0\.run\.runtime: not docker/,
  );
  assert.throws(
    () =>
      parseHeartbeatReply({
        instances: [],
        intervalMs: 1000,
        peers: {
          version: "v",
          closed: true,
          nodes: [{ address: "10.0.0.2", ports: { min: 9, max: 1 } }],
          tenants: {},
        },
      }),
    /peers\.nodes\.0\.ports: not a port range/,
  );
  // An older server's one shared token (traces.ingestToken) is ignored: no trace defaults, no error.
  const old = parseHeartbeatReply({ instances: [], intervalMs: 1000, traces: { ingestToken: "x" } });
  assert.equal(old.ingestTokens, undefined);
});

test("the agent ships stdout and stderr lines with their stream, and keeps them through 429s", async (t) => {
  const { cp, digest, newAgent } = await setUp(t, "logs", (root) => {
    // An app that writes to both streams, then waits to be stopped.
    const app = join(root, "app");
    mkdirSync(app);
    writeFileSync(
      join(app, "talk.js"),
      `for (let i = 0; i < 30; i++) { console.log("out " + i); console.error("err " + i); }
console.log(JSON.stringify({ level: "warn", msg: "json line" }));
console.log("x".repeat(70000));
setInterval(() => {}, 1000);`,
    );
    return app;
  });
  // The first two posts are refused as over capacity: the lines must come again, none lost.
  cp.logRefusals = [429, 429];
  const agent = newAgent({ heartbeatMs: 200 });
  await agent.start();
  const d = desiredHello("talk1", digest, 1);
  d.run.command = "node talk.js";
  d.run.health = { kind: "process", intervalMs: 200, timeoutMs: 1000, failures: 3, startupMs: 30_000 };
  cp.desired = [d];
  await waitFor(() => (cp!.shipped.length >= 63 ? true : undefined), "every line shipped", 15_000);
  assert.ok(cp.logPosts >= 3, `posts: ${cp.logPosts}`);
  const of = (stream: string) => cp!.shipped.filter((l) => l.stream === stream).map((l) => l.line);
  assert.deepEqual(
    of("stderr"),
    Array.from({ length: 30 }, (_, i) => `err ${i}`),
  );
  const out = of("stdout");
  assert.deepEqual(out.slice(0, 31), [
    ...Array.from({ length: 30 }, (_, i) => `out ${i}`),
    JSON.stringify({ level: "warn", msg: "json line" }),
  ]);
  // A line longer than the server takes arrives in pieces.
  assert.deepEqual(
    out.slice(31).map((l) => l.length),
    [65536, 70000 - 65536],
  );
  assert.equal(cp.shipped.length, 63);
});

test("a failing health check: each new outcome goes up at once with its status, body and log lines; usage has cores", async (t) => {
  const { cp, digest, newAgent } = await setUp(t, "probes");
  // A long interval between regular heartbeats: a new outcome must not wait for it.
  const agent = newAgent({
    heartbeatMs: 5000,
    statsMs: 300,
  });
  await agent.start();
  const sick = desiredHello("sick1", digest, 1);
  sick.run.command =
    `node -e 'console.log("sick app: waiting for the database"); ` +
    `require("node:http").createServer((q, r) => { r.statusCode = 503; r.end("database\\n not ready"); })` +
    `.listen(Number(process.env.PORT))'`;
  cp.desired = [sick];
  await reported(cp, "sick1", (s) => s.state === "up", "sick1 up");
  const upAt = Date.now();
  const status = await reported(
    cp,
    "sick1",
    (s) => s.probes?.some((p) => p.status === 503) === true,
    "a 503 reported",
  );
  const answered = status.probes!.find((p) => p.status === 503)!;
  assert.equal(answered.ok, false);
  assert.equal(answered.message, "GET /healthz answered 503");
  assert.equal(answered.body, "database not ready");
  assert.deepEqual(answered.logTail, ["sick app: waiting for the database"]);
  assert.equal(status.state, "up", "still not healthy");
  assert.ok(
    Date.now() - upAt < 3000,
    `reported ${Date.now() - upAt} ms after up, not at the next 5 s heartbeat`,
  );
  // Repeats count up in the same record; every heartbeat carries the records while it fails.
  const later = await reported(
    cp,
    "sick1",
    (s) => (s.probes?.find((p) => p.attempt === answered.attempt)?.count ?? 0) >= 5,
    "the same outcome counted",
  );
  assert.equal(later.probes!.filter((p) => p.status === 503).length, 1, "one record for the repeats");
  assert.ok(later.probes!.length <= 5);
  const cores = await reported(cp, "sick1", (s) => s.usage?.cpuCores !== undefined, "CPU cores measured");
  assert.ok(cores.usage!.cpuCores! >= 0 && cores.usage!.cpuCores! < 64);
  assert.ok((cp.heartbeats.at(-1)?.stats?.cpuBusyCores ?? -1) >= 0, "the machine's busy cores");
});

test("a change the wait reports starts the instance at once, not at the next heartbeat; heartbeats name the slugs held", async (t) => {
  const { cp, digest, newAgent } = await setUp(t, "wait");
  // Regular heartbeats a minute apart: only the wait can make this test pass in time.
  const agent = newAgent({ heartbeatMs: 60_000 });
  await agent.start();
  await waitFor(() => (cp!.heartbeats.length > 0 && cp!.waits > 0) || undefined, "a heartbeat and a wait");
  await sleep(300);
  const before = cp.heartbeats.length;
  assert.deepEqual(cp.heartbeats.at(-1)?.slugs, [], "no slug held yet");

  const placedAt = Date.now();
  cp.desired = [desiredHello("woken1", digest, 1)];
  cp.changed();
  const healthy = await reported(cp, "woken1", (s) => s.state === "healthy", "woken1 healthy");
  const tookMs = Date.now() - placedAt;
  assert.ok(tookMs < 10_000, `healthy ${tookMs} ms after the change, not a minute later`);
  assert.ok(cp.heartbeats.length > before);
  assert.equal(await get(healthy.port!), "hi from woken1 (release 1)\n");
  assert.deepEqual(cp.heartbeats.at(-1)?.slugs, [digest], "the slug it downloaded is named");
});

test("the other nodes' ports: the agent says its range and the version it applies, and keeps them for its next start", async (t) => {
  const { cp, dataDir, newAgent } = await setUp(t, "peers");
  cp.peers = {
    version: "v7",
    closed: true,
    nodes: [{ address: "10.0.0.2", ports: { min: 22000, max: 22999 } }],
    tenants: { default: ["10.0.0.2:22001"] },
    platform: ["10.0.0.9:2379"],
  };
  const agent = newAgent({ heartbeatMs: 100, ports: { min: 21000, max: 21999 } });
  await agent.start();
  await agent.answered;
  assert.deepEqual(cp.heartbeats[0]?.instancePorts, { min: 21000, max: 21999 });
  assert.equal(cp.heartbeats[0]?.peersVersion, undefined, "none applied yet");
  await waitFor(
    () => (cp.heartbeats.at(-1)?.peersVersion === "v7" ? true : undefined),
    "a heartbeat naming v7",
  );
  assert.deepEqual(JSON.parse(readFileSync(join(dataDir, "peers.json"), "utf8")), cp.peers);
  await agent.stop();
  // A new agent on the same data dir applies them before it is answered, and says so.
  const before = cp.heartbeats.length;
  const again = newAgent({ heartbeatMs: 100 });
  await again.start();
  await again.answered;
  assert.equal(cp.heartbeats[before]?.peersVersion, "v7");
});

test("host names in the peers reach the driver as the addresses this machine resolves them to; peers.json keeps the names", async (t) => {
  const { cp, dataDir, newAgent } = await setUp(t, "peer-names");
  cp.peers = { version: "v1", closed: false, nodes: [], tenants: {}, platform: ["localhost:2379"] };
  const driver = new ProcessDriver({ stateRoot: join(dataDir, "driver") });
  t.after(() => driver.close());
  const seen: string[][] = [];
  const setPolicy = driver.setNetworkPolicy.bind(driver);
  driver.setNetworkPolicy = (policy) => {
    seen.push(policy.peers?.platform ?? []);
    setPolicy(policy);
  };
  const agent = newAgent({ heartbeatMs: 100, driver });
  await agent.start();
  await waitFor(
    () => (seen.some((p) => p.includes("127.0.0.1:2379") || p.includes("[::1]:2379")) ? true : undefined),
    "the driver's policy with localhost's address",
  );
  assert.ok(
    seen.some((p) => p.includes("localhost:2379")),
    "first as given, until the answer came",
  );
  await waitFor(
    () => (cp.heartbeats.at(-1)?.peersVersion === "v1" ? true : undefined),
    "a heartbeat naming v1",
  );
  assert.deepEqual(JSON.parse(readFileSync(join(dataDir, "peers.json"), "utf8")).platform, [
    "localhost:2379",
  ]);
});

test("a big cluster's control plane sets a floor on the heartbeat interval: the agent heartbeats no more often", async (t) => {
  const { cp, newAgent } = await setUp(t, "interval");
  const agent = newAgent({ heartbeatMs: 100 });
  await agent.start();
  await sleep(1500);
  const free = cp.heartbeats.length;
  assert.ok(free >= 6, `${free} heartbeats in 1.5 s at its own 100 ms`);
  cp.minIntervalMs = 1000;
  await waitFor(() => (cp!.heartbeats.length > free ? true : undefined), "a heartbeat that hears the floor");
  await sleep(300);
  const floored = cp.heartbeats.length;
  await sleep(2500);
  const more = cp.heartbeats.length - floored;
  assert.ok(more >= 1 && more <= 3, `${more} heartbeats in 2.5 s with a 1 s floor`);
});

test("answered resolves at the first heartbeat the control plane answers, never for a refused credential", async (t) => {
  const { newAgent } = await setUp(t, "answered");
  const refused = newAgent({ token: "herd_agt_revoked", heartbeatMs: 100 });
  let said = false;
  void refused.answered.then(() => {
    said = true;
  });
  await refused.start();
  await sleep(500);
  await refused.stop();
  assert.equal(said, false, "a refused agent was answered");
  const agent = newAgent({ heartbeatMs: 100 });
  await agent.start();
  await agent.answered;
});

test("a credential refused as revoked (the node removed) stops and removes every instance; an unknown one stops none", async (t) => {
  const world = await setUp(t, "revoked");
  const { cp, digest, dataDir } = world;
  const agent = world.newAgent({ heartbeatMs: 100 });
  await agent.start();
  cp.desired = [desiredHello("inst1", digest, 1), { ...desiredHello("pet1", digest, 1), mode: "pet" }];
  const one = await reported(cp, "inst1", (s) => s.state === "healthy", "inst1 healthy");
  const pet = await reported(cp, "pet1", (s) => s.state === "healthy", "pet1 healthy");
  writeFileSync(join(dataDir, "volumes", "pet1", "kept.txt"), "pet data");

  // Any other 401 (an unknown token: another control plane, a restored database) proves nothing: all stays.
  cp.refusal = { code: "unauthorized", message: "unknown token" };
  await sleep(600);
  assert.ok(processAlive(one.pid!) && processAlive(pet.pid!), "an unknown-token 401 stopped instances");
  assert.equal(agent.statuses().length, 2);

  cp.refusal = { code: "revoked", message: "token agt_1 was revoked" };
  await waitFor(() => agent.statuses().length === 0 || undefined, "every instance removed");
  assert.ok(!processAlive(one.pid!) && !processAlive(pet.pid!), "a removed node's instances still run");
  assert.ok(!existsSync(join(dataDir, "instances", "inst1")), "the instance's files stay");
  assert.equal(readFileSync(join(dataDir, "volumes", "pet1", "kept.txt"), "utf8"), "pet data");
  await agent.stop();

  // An agent started again on the same data dir adopts nothing and starts nothing.
  const again = world.newAgent({ heartbeatMs: 100 });
  await again.start();
  await sleep(400);
  assert.deepEqual(again.statuses(), []);
});

test("pet volumes ride in heartbeats; one the reply names is removed, unless an instance here uses it", async (t) => {
  const world = await setUp(t, "volumes");
  const { cp, digest, dataDir } = world;
  const agent = world.newAgent({ heartbeatMs: 100 });
  await agent.start();
  cp.desired = [{ ...desiredHello("pet1", digest, 1), mode: "pet" }];
  await reported(cp, "pet1", (s) => s.state === "healthy", "pet1 healthy");
  // Left by a pet of an app destroyed while it ran elsewhere; and something not herd's.
  mkdirSync(join(dataDir, "volumes", "gone-web-0"));
  writeFileSync(join(dataDir, "volumes", "gone-web-0", "old.txt"), "old");
  mkdirSync(join(dataDir, "volumes", " not ours"));
  const listed = await waitFor(() => {
    const volumes = cp.heartbeats.at(-1)?.volumes;
    return volumes?.includes("gone-web-0") ? volumes : undefined;
  }, "the volumes in a heartbeat");
  assert.deepEqual([...listed].sort(), ["gone-web-0", "pet1"]);
  cp.discardVolumes = ["gone-web-0", "pet1"];
  await waitFor(() => !existsSync(join(dataDir, "volumes", "gone-web-0")) || undefined, "gone-web-0 removed");
  await sleep(300);
  assert.ok(existsSync(join(dataDir, "volumes", "pet1")), "a running pet's volume was removed");
  assert.equal(agent.statuses().find((s) => s.id === "pet1")?.state, "healthy");
});

test("config: the files and the feed before the start, a new version applied in place, or by a restart when the service asks", async (t) => {
  const { cp, digest, dataDir, newAgent } = await setUp(t, "config");
  const doc = (version: number) => ({
    tenant: "default",
    app: "hello",
    version,
    values: { MODE: `m${version}`, "log.level": "debug", PORT: "1" },
    files: { "app.yaml": { format: "yaml" as const, content: `v: ${version}\n` } },
    origins: {
      MODE: `app v${version}`,
      "log.level": `app v${version}`,
      PORT: `app v${version}`,
      "app.yaml": `app v${version}`,
    },
  });
  const withConfig = (version: number, onChange: "file" | "restart"): DesiredInstance => ({
    ...desiredHello("cfg1", digest, 1),
    config: { version, onChange, document: doc(version) },
  });
  const agent = newAgent({ heartbeatMs: 200 });
  await agent.start();
  cp.desired = [withConfig(1, "restart")];
  const first = await reported(
    cp,
    "cfg1",
    (s) => s.state === "healthy" && s.configVersion === 1,
    "cfg1 healthy at config v1",
  );
  const env = environOf(first.pid!);
  // Paths as the instance sees them: inside the sandbox (as root), its config dir is bound elsewhere.
  const onHost = (p: string | undefined) =>
    (p ?? "").replace("/run/herd-sandbox/config", join(dataDir, "instances", "cfg1", "config"));
  // Root's, beside the app dir and not in it: the app cannot point the agent's writes elsewhere.
  assert.ok(onHost(env.get("HERD_CONFIG_FILE")).startsWith(join(dataDir, "instances", "cfg1", "config")));
  const file = onHost(env.get("HERD_CONFIG_FILE"));
  assert.equal(JSON.parse(readFileSync(file, "utf8")).values.MODE, "m1");
  assert.equal(readFileSync(join(onHost(env.get("HERD_CONFIG_DIR")), "app.yaml"), "utf8"), "v: 1\n");
  const feed = await fetch(env.get("HERD_CONFIG_URL") ?? "");
  assert.equal(((await feed.json()) as { version: number }).version, 1);
  assert.equal((await fetch(`${env.get("HERD_CONFIG_URL")?.replace(/key=.*/, "key=wrong")}`)).status, 403);
  assert.ok(!readFileSync(join(dataDir, "instances", "cfg1", "instance.json"), "utf8").includes("m1"));
  // Its keys are env too, read at the start; a name a shell cannot use is not, and herd's own win.
  assert.equal(env.get("MODE"), "m1");
  assert.equal(env.get("log.level"), undefined);
  assert.equal(env.get("PORT"), String(first.port));

  // restart: a new process with the new files.
  cp.desired = [withConfig(2, "restart")];
  const second = await reported(
    cp,
    "cfg1",
    (s) => s.state === "healthy" && s.configVersion === 2,
    "cfg1 restarted at v2",
  );
  assert.notEqual(second.pid, first.pid);
  assert.equal(JSON.parse(readFileSync(file, "utf8")).version, 2);
  assert.equal(environOf(second.pid!).get("MODE"), "m2", "a restart starts with the new keys");

  // The app owns its app dir: links it leaves there (as an earlier herd's config path, .herd/config)
  // send none of the agent's writes or removals elsewhere.
  const elsewhere = join(dataDir, "..", "elsewhere");
  mkdirSync(join(elsewhere, "config", "files"), { recursive: true });
  writeFileSync(join(elsewhere, "config", "files", "keep.txt"), "mine");
  symlinkSync(elsewhere, join(dataDir, "instances", "cfg1", "app", ".herd"));

  // file: the same process; a long poll at v2 gets v3.
  const held = fetch(`${env.get("HERD_CONFIG_URL")}&since=2`);
  cp.desired = [withConfig(3, "file")];
  const third = await reported(cp, "cfg1", (s) => s.configVersion === 3, "cfg1 at v3");
  assert.equal(third.pid, second.pid);
  assert.equal(((await (await held).json()) as { values: { MODE: string } }).values.MODE, "m3");
  assert.equal(
    environOf(third.pid!).get("MODE"),
    "m2",
    "env is the start's: a change in place reaches the files and feed",
  );
  assert.equal(readFileSync(join(onHost(env.get("HERD_CONFIG_DIR")), "app.yaml"), "utf8"), "v: 3\n");
  assert.deepEqual(
    readdirSync(join(elsewhere, "config", "files")),
    ["keep.txt"],
    "written or removed through a link",
  );
  assert.deepEqual(readdirSync(join(elsewhere, "config")), ["files"]);
});

test("under memory pressure the agent evicts a burstable instance over its request, lowest criticality first, and says why", async (t) => {
  const { cp, digest, newAgent } = await setUp(t, "evict");
  const MiB = 1024 * 1024;
  const withResources = (id: string, memory: number, criticality?: "low" | "critical"): DesiredInstance => {
    const d = desiredHello(id, digest, 1);
    d.run.resources = { cpu: 0.1, memory, memoryLimit: 512 * MiB };
    if (criticality) d.run.criticality = criticality;
    return d;
  };
  // A Node process uses some 40 MiB: 8 MiB requested is far over its request, 400 MiB is within.
  cp.desired = [
    withResources("within1", 400 * MiB),
    withResources("critical1", 8 * MiB, "critical"),
    withResources("low1", 8 * MiB, "low"),
  ];
  let agent = newAgent({ heartbeatMs: 200, statsMs: 200 });
  await agent.start();
  for (const id of ["within1", "critical1", "low1"])
    await reported(cp, id, (s) => s.state === "healthy" && (s.usage?.memoryBytes ?? 0) > 0, `${id} healthy`);
  await agent.stop();
  cp.heartbeats.length = 0;
  // Restart the agent with a threshold no machine meets: always under pressure. It adopts all three.
  agent = newAgent({
    heartbeatMs: 200,
    statsMs: 200,
    evictionMemory: 1024 ** 5,
  });
  await agent.start();
  const evicted = (id: string) =>
    waitFor(() => {
      for (const hb of cp!.heartbeats) {
        const s = hb.instances.find((i) => i.id === id && i.state === "exited" && i.evicted);
        if (s) return s;
      }
      return undefined;
    }, `${id} evicted`);
  const low = await evicted("low1");
  assert.match(low.evicted!, /node memory pressure.*of a 8 MiB request \(low, burstable\)/);
  // The low one went first: no heartbeat before it said critical1 was evicted.
  const firstLow = cp.heartbeats.findIndex((hb) => hb.instances.some((i) => i.id === "low1" && i.evicted));
  assert.ok(
    !cp.heartbeats
      .slice(0, firstLow)
      .some((hb) => hb.instances.some((i) => i.id === "critical1" && i.evicted)),
    "critical1 was not evicted before low1",
  );
  await evicted("critical1");
  // Within its request: never a candidate, however short the node is.
  assert.ok(!cp.heartbeats.some((hb) => hb.instances.some((i) => i.id === "within1" && i.evicted)));
});
