// bench:config — one config change acknowledged by 10,000 subscribers
// (docs/config.md). A child process serves the agent's config feed
// (src/config-center/feed.ts) with one channel per simulated instance;
// --clients processes (bench/config-subscribers.ts, default 2) open 10,000
// subscribers between them on loopback, half long polls with a version
// cursor and half SSE streams, each on its own connection. Where they run is
// printed: all on this machine, sharing its cores with the feed, whereas real
// instances are spread over nodes, each node's agent serving only its own;
// so each side's CPU per acknowledgement is printed apart. A round
// publishes a new version and waits until every subscriber has it: the
// latency of each is publish → its acknowledgement (received and parsed).
//
// Peer, in the same run: the same change seen by 10,000 plain pollers (GET
// every POLL_MS, no cursor), as a client without push would do. Paired
// rounds A B A B: push, polling, push, polling.
//
// A round starts once every push subscriber waits (its long poll held again,
// its stream open), and the feed has each channel's document as its own copy,
// as an agent has one per instance from its heartbeat reply.
//
// Before the fan-out: publishes per second through the config center on a
// real SQLite store (bench/config-publish.ts), beside plain store puts.
//
// Prints p50/p99/max per mode, full fan-outs per second (publish → all
// acknowledged, one after the other), the feed's own publish time, and the
// ratio of the peer's p99 to push's, and the CPU each change cost the feed
// and the subscribers, in all and per acknowledgement (figures the machine's
// load inflates far less than the latencies).
// Goal: push p99 ≤ 1 s. --strict exits 1 when the goal is missed or any push
// round lost a subscriber.
//
// Usage: node bench/config.ts [--subscribers N] [--rounds R] [--clients C] [--strict] [--no-peer]
//        PROF=<dir> writes the feed process's CPU profile there (--cpu-prof).

import { type ChildProcess, fork } from "node:child_process";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import { measurePublishes } from "./config-publish.ts";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const SUBSCRIBERS = arg("--subscribers", 10_000);
const ROUNDS = arg("--rounds", 3);
const STRICT = process.argv.includes("--strict");
/** Push rounds only, for profiles and quick before/after runs: no peer, so no ratio. */
const NO_PEER = process.argv.includes("--no-peer");
const PUBLISH_SECONDS = 3;
const POLL_MS = 1000;
const GOAL_P99_MS = 1000;
const ROUND_TIMEOUT_MS = 30_000;
const CLIENTS = arg("--clients", 2);

let server: ChildProcess | undefined;
let port = 0;
/** The processes the subscribers run in, each with its slice. */
let clients: ChildProcess[] = [];

/** Per version: when this process asked for it to be published (machine clock), and each acknowledgement's latency. */
const rounds = new Map<number, { t0: number; acks: number[]; reported: number; done: () => void }>();

const now = () => performance.timeOrigin + performance.now();

function onClientMessage(m: { version?: number; times?: number[]; partial?: boolean }): void {
  if (m.version === undefined || !m.times) return;
  const r = rounds.get(m.version);
  if (!r) return;
  for (const t of m.times) r.acks.push(t - r.t0);
  if (!m.partial && ++r.reported === clients.length) r.done();
}

/** Starts CLIENTS processes with SUBSCRIBERS between them; resolves once every subscriber has its first version. */
async function startClients(mode: "push" | "polling"): Promise<void> {
  const per = Math.ceil(SUBSCRIBERS / CLIENTS);
  clients = [];
  for (let first = 0; first < SUBSCRIBERS; first += per) {
    const count = Math.min(per, SUBSCRIBERS - first);
    const child = fork(
      join(import.meta.dirname, "config-subscribers.ts"),
      [String(port), String(first), String(count), mode, String(POLL_MS)],
      { stdio: "inherit" },
    );
    child.on("message", onClientMessage);
    clients.push(child);
  }
  await Promise.all(
    clients.map(
      (c) =>
        new Promise<void>((resolve, reject) => {
          const on = (m: { ready?: boolean }) => {
            if (!m.ready) return;
            c.off("message", on);
            resolve();
          };
          c.on("message", on);
          c.once("exit", (code) => reject(new Error(`a subscriber process exited (${code})`)));
        }),
    ),
  );
}

/** Ends the subscriber processes; the errors they counted. */
async function stopClients(): Promise<number> {
  let errors = 0;
  for (const c of clients) errors += (await ask<{ errors?: number }>(c, { cpu: true }, "errors")).errors ?? 0;
  await Promise.all(
    clients.map((c) => {
      const exited = c.exitCode === null ? new Promise((res) => c.once("exit", res)) : undefined;
      c.send({ stop: true });
      return exited;
    }),
  );
  clients = [];
  return errors;
}

/** Sends `message` to `child` and resolves with its first answer that has `field`. */
function ask<T>(child: ChildProcess, message: object, field: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, unknown>) => {
      if (m[field] === undefined) return;
      child.off("message", on);
      resolve(m as T);
    };
    child.on("message", on);
    child.send(message);
  });
}

async function startServer(): Promise<void> {
  server = fork(join(import.meta.dirname, "config-feed-server.ts"), [String(SUBSCRIBERS)], {
    execArgv: process.env.PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.PROF}`] : [],
    stdio: "inherit",
  });
  port = await new Promise<number>((resolve, reject) => {
    server?.once("message", (m: { port?: number }) =>
      m.port ? resolve(m.port) : reject(new Error("no port")),
    );
    server?.once("exit", (code) => reject(new Error(`feed server exited (${code})`)));
  });
}

let lastPublishMs = 0;
/** Acknowledgements that never came in this mode's rounds (counted as the round timeout). */
let missing = 0;

/** How many long polls the feed holds and streams it has open. */
function followers(): Promise<number> {
  return new Promise((resolve) => {
    const on = (m: { followers?: number }) => {
      if (m.followers === undefined) return;
      server?.off("message", on);
      resolve(m.followers);
    };
    server?.on("message", on);
    server?.send({ following: true });
  });
}

type Cpu = { cpu: { user: number; system: number } };
const seconds = (m: Cpu) => (m.cpu.user + m.cpu.system) / 1e6;
/** The feed process's CPU seconds so far. */
async function feedCpu(): Promise<number> {
  return server ? seconds(await ask<Cpu>(server, { cpu: true }, "cpu")) : 0;
}
/** The subscriber processes' CPU seconds so far, all together. */
async function clientCpu(): Promise<number> {
  const all = await Promise.all(clients.map((c) => ask<Cpu>(c, { cpu: true }, "cpu")));
  return all.reduce((a, m) => a + seconds(m), 0);
}
/** Publishes `version` and waits for every subscriber; the latencies in ms. */
async function round(version: number): Promise<number[]> {
  const r = { t0: 0, acks: [] as number[], reported: 0, done: () => {} };
  const all = new Promise<void>((resolve) => {
    r.done = resolve;
  });
  const published = new Promise<void>((resolve) => {
    const on = (m: { published?: number; publishMs?: number }) => {
      if (m.published !== version) return;
      lastPublishMs = m.publishMs ?? 0;
      server?.off("message", on);
      resolve();
    };
    server?.on("message", on);
  });
  await new Promise<void>((resolve) => {
    const on = (m: { prepared?: number }) => {
      if (m.prepared !== version) return;
      server?.off("message", on);
      resolve();
    };
    server?.on("message", on);
    server?.send({ prepare: version });
  });
  rounds.set(version, r);
  r.t0 = now();
  server?.send({ publish: version });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(resolve, ROUND_TIMEOUT_MS, "timeout");
  });
  const outcome = await Promise.race([all, timeout]);
  clearTimeout(timer);
  await published;
  if (outcome === "timeout") {
    // The acknowledgements that did come, from the processes that did not have all theirs.
    await Promise.all(
      clients.map((c) => ask<{ partial?: boolean }>(c, { report: version }, "partial").catch(() => {})),
    );
  }
  rounds.delete(version);
  if (outcome === "timeout") {
    process.stderr.write(
      `  v${version}: only ${r.acks.length} of ${SUBSCRIBERS} subscribers had it after ${ROUND_TIMEOUT_MS} ms\n`,
    );
    // The missing ones count as the timeout: the figure is then a lower bound, and said so.
    missing += SUBSCRIBERS - r.acks.length;
    while (r.acks.length < SUBSCRIBERS) r.acks.push(ROUND_TIMEOUT_MS);
  }
  return r.acks;
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;

interface ModeResult {
  missing: number;
  /** CPU seconds per change, of the feed and of the subscribers' process. */
  feedCpu: number[];
  clientCpu: number[];
  latencies: number[];
  roundMs: number[];
  publishMs: number[];
  errors: number;
  openMs: number;
}

let version = 1;
async function runMode(mode: "push" | "polling"): Promise<ModeResult> {
  const openStart = performance.now();
  await startClients(mode);
  const openMs = performance.now() - openStart;
  // Push: every subscriber is waiting (its long poll held again, its stream open) before the first change.
  if (mode === "push") {
    for (let tries = 0; (await followers()) < SUBSCRIBERS && tries < 100; tries++)
      await new Promise((res) => setTimeout(res, 100));
  }
  process.stderr.write(`  ${mode}: ${SUBSCRIBERS} subscribers open in ${openMs.toFixed(0)} ms\n`);
  const result: ModeResult = {
    missing: 0,
    feedCpu: [],
    clientCpu: [],
    latencies: [],
    roundMs: [],
    publishMs: [],
    errors: 0,
    openMs,
  };
  missing = 0;
  for (let k = 0; k < ROUNDS; k++) {
    version++;
    const [f0, c0] = [await feedCpu(), await clientCpu()];
    const t = performance.now();
    const lat = await round(version);
    result.feedCpu.push((await feedCpu()) - f0);
    result.clientCpu.push((await clientCpu()) - c0);
    result.roundMs.push(performance.now() - t);
    result.publishMs.push(lastPublishMs);
    result.latencies.push(...lat);
    process.stderr.write(
      `  ${mode} v${version}: all ${lat.length} acknowledged in ${(performance.now() - t).toFixed(0)} ms\n`,
    );
    // Let pollers spread out again between changes.
    await new Promise((res) => setTimeout(res, mode === "polling" ? Math.random() * POLL_MS : 50));
  }
  result.errors = await stopClients();
  result.missing = missing;
  await new Promise((res) => setTimeout(res, 500));
  return result;
}

function summary(
  name: string,
  r: ModeResult[],
): { p99: number; perSecond: number; line: string; lost: number } {
  const lat = r.flatMap((x) => x.latencies).sort((a, b) => a - b);
  const roundMs = r.flatMap((x) => x.roundMs);
  const perSecond = roundMs.length / (roundMs.reduce((a, b) => a + b, 0) / 1000);
  const publish = r.flatMap((x) => x.publishMs);
  const p99 = pct(lat, 99);
  const lost = r.reduce((a, x) => a + x.missing, 0);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const feed = mean(r.flatMap((x) => x.feedCpu));
  const subs = mean(r.flatMap((x) => x.clientCpu));
  const perAck = (s: number) => ((s / SUBSCRIBERS) * 1e6).toFixed(0);
  const cpu =
    `cpu per change: feed ${feed.toFixed(2)} s (${perAck(feed)} us per ack), ` +
    `subscribers ${subs.toFixed(2)} s (${perAck(subs)} us per ack)`;
  const line =
    `${name.padEnd(8)} acks ${lat.length}  p50 ${pct(lat, 50).toFixed(0)} ms  p99 ${p99.toFixed(0)} ms  max ${(lat.at(-1) ?? 0).toFixed(0)} ms  ` +
    `fan-outs/s ${perSecond.toFixed(2)}  feed publish ${(publish.reduce((a, b) => a + b, 0) / publish.length).toFixed(1)} ms  ` +
    `errors ${r.reduce((a, x) => a + x.errors, 0)}  open ${Math.max(...r.map((x) => x.openMs)).toFixed(0)} ms\n         ${cpu}` +
    (lost > 0
      ? `\n         ${lost} acknowledgements never came within ${ROUND_TIMEOUT_MS} ms (counted as ${ROUND_TIMEOUT_MS} ms: a lower bound)`
      : "");
  return { p99, perSecond, line, lost };
}

async function main(): Promise<number> {
  console.log(
    `bench:config — ${SUBSCRIBERS} subscribers (push: half long poll, half SSE; peer: polling every ${POLL_MS} ms), ${ROUNDS} changes per run, A B A B`,
  );
  console.log(
    `where they run: the feed in 1 process, the subscribers in ${CLIENTS} processes, all on this machine (${availableParallelism()} cores)`,
  );
  console.log(
    `load before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")} on this machine`,
  );
  const pub = await measurePublishes(PUBLISH_SECONDS);
  console.log(
    `publishes/s ${pub.perSecond.toFixed(0)} (a version stored, the head moved, seen by the store watch: p99 ${pub.watchP99.toFixed(1)} ms); ` +
      `plain store puts/s ${pub.putsPerSecond.toFixed(0)}; ratio ${(pub.perSecond / pub.putsPerSecond).toFixed(2)}x`,
  );
  await startServer();
  const push: ModeResult[] = [];
  const polling: ModeResult[] = [];
  for (let pair = 0; pair < 2; pair++) {
    push.push(await runMode("push"));
    if (!NO_PEER) polling.push(await runMode("polling"));
  }
  const a = summary("push", push);
  console.log(a.line);
  if (NO_PEER) console.log("peer: not measured (--no-peer), no ratio");
  else {
    const b = summary("polling", polling);
    console.log(b.line);
    console.log(
      `ratio: polling p99 / push p99 = ${(b.p99 / a.p99).toFixed(1)}x; push fan-outs/s / polling = ${(a.perSecond / b.perSecond).toFixed(1)}x`,
    );
  }
  console.log(
    `load after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  const ok = a.p99 <= GOAL_P99_MS && a.lost === 0;
  console.log(`goal push p99 ≤ ${GOAL_P99_MS} ms, every subscriber acknowledged: ${ok ? "met" : "MISSED"}`);
  return STRICT && !ok ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench:config failed: ${(err as Error).message}`);
} finally {
  for (const c of clients) c.kill();
  // The feed closes and exits once disconnected (writing its profile under PROF); killed if it does not.
  const exited =
    server && server.exitCode === null ? new Promise((res) => server?.once("exit", res)) : undefined;
  server?.disconnect();
  if (exited) await Promise.race([exited, new Promise((res) => setTimeout(res, 5000))]);
  server?.kill();
}
process.exit(code);
