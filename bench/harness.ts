// Shared by the benchmarks that drive real processes with wrk
// (bench/gateway.ts, bench/gateway-cpu.ts, bench/telemetry.ts's tracing section): children in
// their own process groups (so their CPU and their end cover every process
// they fork), CPU seconds of a group from /proc, wrk runs, and one cleanup
// that ends everything started (also on Ctrl-C).

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { freePort } from "../src/common/free-port.ts";

export { freePort };

export const ROOT = join(import.meta.dirname, "..");
/** Clock ticks per second of /proc's utime and stime (USER_HZ; 100 on Linux). */
const TICKS = 100;

export interface Child {
  name: string;
  process: ChildProcess;
  output: string;
  exited: Promise<void>;
}

const children = new Set<Child>();
const closers: Array<() => Promise<void>> = [];
const tempDirs: string[] = [];

/** Runs `close` during cleanup(), before the children are ended. */
export function onCleanup(close: () => Promise<void>): void {
  armSignals();
  closers.push(close);
}

/** Removes `dir` during cleanup(). */
export function removeOnCleanup(dir: string): void {
  armSignals();
  tempDirs.push(dir);
}

/** A child in its own process group, so its CPU and its end cover all its processes. */
export function startChild(
  name: string,
  command: string,
  args: string[],
  childEnv: NodeJS.ProcessEnv = {},
): Child {
  armSignals();
  const proc = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...childEnv },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const child: Child = {
    name,
    process: proc,
    output: "",
    exited: new Promise((resolve) => proc.once("exit", () => resolve())),
  };
  const keep = (chunk: Buffer) => {
    child.output = (child.output + chunk.toString()).slice(-8000);
  };
  proc.stdout?.on("data", keep);
  proc.stderr?.on("data", keep);
  proc.once("error", (err) => {
    child.output += `\n${err.message}`;
  });
  children.add(child);
  proc.once("exit", () => children.delete(child));
  return child;
}

/** Ends a child and its process group by pid: SIGTERM, then SIGKILL after `graceMs` (3 s). */
export async function stopChild(child: Child, graceMs = 3000): Promise<void> {
  const pid = child.process.pid;
  if (pid === undefined || child.process.exitCode !== null || child.process.signalCode !== null) return;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  signal("SIGTERM");
  const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), graceMs));
  if (!(await Promise.race([child.exited.then(() => true), timer]))) {
    signal("SIGKILL");
    await child.exited;
  }
  // nginx's workers or a proxy's children may outlive the leader for a moment.
  signal("SIGKILL");
}

let cleaning: Promise<void> | undefined;
/** Closes what onCleanup registered, ends every child, removes the temp dirs. Once. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const close of closers) await close().catch(() => {});
    await Promise.all([...children].map(stopChild));
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}
let armed = false;
/**
 * On Ctrl-C (and SIGTERM, SIGHUP): cleanup(), then exit. Armed by the first thing there is to
 * clean up, so a bench that imports only the verdicts keeps its own signal handling.
 */
function armSignals(): void {
  if (armed) return;
  armed = true;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => void cleanup().finally(() => process.exit(130)));
  }
}

/** Each process of process group `pgid`: its pid and `/proc/<pid>/stat` fields from field 3 (state) on. */
function* groupProcesses(pgid: number): Generator<{ pid: number; fields: string[] }> {
  for (const entry of readdirSync("/proc")) {
    if (entry.charCodeAt(0) > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // fields[0] is field 3 (state): pgrp is field 5.
    if (Number(fields[2]) === pgid) yield { pid: Number(entry), fields };
  }
}

/** CPU seconds (user + system) used so far by every process in process group `pgid`. */
export function groupCpuSeconds(pgid: number): number {
  let ticks = 0;
  // utime is field 14, stime 15.
  for (const { fields } of groupProcesses(pgid)) ticks += Number(fields[11]) + Number(fields[12]);
  return ticks / TICKS;
}

/** RSS in MB of every process of process group `pgid`, as `total MB (a+b+c)`. */
export function groupRss(pgid: number): string {
  const out: number[] = [];
  for (const { pid } of groupProcesses(pgid)) {
    try {
      const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (kb) out.push(Math.round(Number(kb[1]) / 1024));
    } catch {
      // exited meanwhile
    }
  }
  return `${out.reduce((a, b) => a + b, 0)} MB (${out.join("+")})`;
}

/** A percentile (`p`: "50", "99") of wrk's `--latency` output, in ms. */
export function wrkPercentile(out: string, p: string): number {
  const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(out);
  if (!m) return Number.NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as "us" | "ms" | "s" | "m"];
}

/**
 * Pins every thread of `pid` (and, with `group`, of every process in its
 * process group) to the CPUs in `cpus` ("0", "1", "0-1") with taskset;
 * children started later inherit it.
 */
export function pinCpus(pid: number, cpus: string, group = false): void {
  const pids = group ? [...groupProcesses(pid)].map((p) => p.pid) : [pid];
  for (const p of pids) execFileSync("taskset", ["-a", "-p", "-c", cpus, String(p)], { stdio: "ignore" });
}

/** The first stdout line of `child` that is JSON with a port. */
export function portOf(child: Child, timeoutMs = 20_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffer = "";
    const timer = setTimeout(() => fail(new Error(`${child.name} did not report its port`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      for (const line of buffer.split("\n").slice(0, -1)) {
        try {
          const port = (JSON.parse(line) as { port?: number }).port;
          if (typeof port === "number") {
            done();
            resolve(port);
            return;
          }
        } catch {
          // not the port line
        }
      }
    };
    const onExit = () => fail(new Error(`${child.name} exited before listening`));
    const done = () => {
      clearTimeout(timer);
      child.process.stdout?.off("data", onData);
      child.process.off("exit", onExit);
    };
    const fail = (err: Error) => {
      done();
      reject(new Error(`${err.message}:\n${child.output}`));
    };
    child.process.stdout?.on("data", onData);
    child.process.once("exit", onExit);
  });
}

/** One GET; the status and body, or the error's message as status 0. */
export function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { headers, agent: false, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", (err) => resolve({ status: 0, body: err.message }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (err) => resolve({ status: 0, body: err.message }));
  });
}

/** Polls `url` until it answers 200 `hello\n`; fails with the child's output after `timeoutMs`. */
export async function untilServes(
  url: string,
  headers: Record<string, string>,
  child: Child | undefined,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = { status: 0, body: "" };
  while (Date.now() < deadline) {
    last = await get(url, headers);
    if (last.status === 200 && last.body === "hello\n") return;
    if (child && child.process.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `${url} did not serve hello within ${timeoutMs} ms (last: ${last.status} ${last.body.slice(0, 200)})` +
      (child ? `\n${child.name} output:\n${child.output}` : ""),
  );
}

/** Something wrk drives: its URL, the headers to send, and the child whose process group does the work. */
export interface Target {
  id: string;
  name: string;
  url: string;
  headers: Record<string, string>;
  child: Child;
}

export interface Load {
  requests: number;
  rps: number;
  errors: number;
}

/** One wrk run (1 thread) against the target. */
export async function runWrk(
  wrk: string,
  target: Target,
  seconds: number,
  connections: number,
): Promise<Load> {
  const args = ["-t1", `-c${connections}`, `-d${seconds}s`, "--timeout", "5s"];
  for (const [k, v] of Object.entries(target.headers)) args.push("-H", `${k}: ${v}`);
  args.push(target.url);
  const child = startChild("wrk", wrk, args);
  await child.exited;
  const out = child.output;
  const requests = /(\d+) requests in/.exec(out);
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  if (!requests || !rps) throw new Error(`cannot read wrk's output:\n${out}`);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(requests[1]),
    rps: Number(rps[1]),
    errors:
      (non2xx ? Number(non2xx[1]) : 0) + (socket ? socket.slice(1).reduce((s, n) => s + Number(n), 0) : 0),
  };
}

export interface Measured {
  usPerRequest: number;
  rps: number;
  errors: number;
}

/** A warm-up run, then a measured one: the target's process-group CPU per request, and wrk's req/s. */
export async function measure(
  wrk: string,
  target: Target,
  run: { seconds: number; warmupSeconds: number; connections: number },
): Promise<Measured> {
  if (run.warmupSeconds > 0) await runWrk(wrk, target, run.warmupSeconds, run.connections);
  const pgid = target.child.process.pid as number;
  const before = groupCpuSeconds(pgid);
  const load = await runWrk(wrk, target, run.seconds, run.connections);
  const used = groupCpuSeconds(pgid) - before;
  return { usPerRequest: (used * 1e6) / Math.max(1, load.requests), rps: load.rps, errors: load.errors };
}

function nginxConfig(
  dir: string,
  port: number,
  upstreamPort: number,
  workers: number,
  asRoot: boolean,
): string {
  return `# written by bench/harness.ts
${asRoot ? "user nobody nogroup;" : ""}
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** nginx from Debian as a keep-alive reverse proxy to `upstreamPort`, its files under `base`/nginx; resolves once it serves. */
export async function startNginx(
  nginx: string,
  base: string,
  upstreamPort: number,
  workers: number,
): Promise<{ url: string; child: Child }> {
  const dir = join(base, "nginx");
  mkdirSync(dir);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    // The workers run as nobody: they need their own temp paths (and a way through the temp dir).
    chmodSync(base, 0o711);
    chownSync(dir, 65534, 65534);
  }
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, nginxConfig(dir, port, upstreamPort, workers, asRoot));
  const child = startChild("nginx", nginx, [
    "-p",
    `${dir}/`,
    "-e",
    `${dir}/error.log`,
    "-c",
    conf,
    "-g",
    "daemon off;",
  ]);
  const url = `http://127.0.0.1:${port}/`;
  await untilServes(url, {}, child);
  return { url, child };
}

// ---------------------------------------------------------------- verdicts, --strict, paired rounds

/** `--strict` on the command line: the bench exits 1 when a target was missed or its verdict did not count. */
/**
 * How a bench starts a measured client of its own (a process): under
 * `chrt --rr 1` when this process may give a child real-time priority (root,
 * chrt there, a cgroup with real-time room: tried once), else as a normal
 * process, and the report says which. Under SCHED_RR it does not queue for a
 * core behind the load the bench makes on the same machine, as a client on
 * another machine would not.
 */
export const realtimeLauncher: { command: string[]; note: string } = (() => {
  try {
    execFileSync("chrt", ["--rr", "1", "true"], { stdio: "ignore" });
    return { command: ["chrt", "--rr", "1", process.execPath], note: "SCHED_RR" };
  } catch (err) {
    return {
      command: [process.execPath],
      note: `default policy (chrt --rr failed: ${(err as Error).message.split("\n")[0]}), so its own wait for a core counts`,
    };
  }
})();

/** Answers of a traffic run by pacedTraffic: when each request was sent (Date.now()), its ms, its outcome (undefined = 200). */
export interface PacedAnswer {
  sentAt: number;
  ms: number;
  outcome: string | undefined;
}

/**
 * An open-loop traffic (Poisson arrivals at `rate`, latency from each
 * request's due time) in a process of its own (bench/traffic-child.ts,
 * started by realtimeLauncher); `answers` holds what came back so far,
 * `setRate` changes its rate from now (a load step by a client already
 * warm), `stop` ends it and resolves with every answer.
 */
export function pacedTraffic(o: {
  url: string;
  host: string;
  connections: number;
  rate: number;
  seconds: number;
}): { answers: PacedAnswer[]; setRate: (rate: number) => void; stop: () => Promise<PacedAnswer[]> } {
  const [command, ...args] = realtimeLauncher.command;
  const child = spawn(command, [...args, join(import.meta.dirname, "traffic-child.ts"), JSON.stringify(o)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const answers: PacedAnswer[] = [];
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
    const lines = out.split("\n");
    out = lines.pop() ?? "";
    for (const line of lines) {
      const [sentAt, ms, outcome] = JSON.parse(line) as [number, number, string | null];
      answers.push({ sentAt, ms, outcome: outcome ?? undefined });
    }
  });
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  // Should this process end first, the child's stdin closes, so it stops too.
  return {
    answers,
    setRate: (rate: number) => {
      child.stdin.write(`rate ${rate}\n`);
    },
    stop: async () => {
      child.stdin.end();
      const code = await closed;
      if (code !== 0) throw new Error(`the traffic process (${o.host}) exited with ${code}`);
      return answers;
    },
  };
}

export const STRICT = process.argv.includes("--strict");

/** The command line's arguments after the script, without `--strict`. */
export function benchArgs(): string[] {
  return process.argv.slice(2).filter((a) => a !== "--strict");
}

interface Verdict {
  name: string;
  ok: boolean;
  /** Set when the run did not do its work: what it failed to do. */
  notDone?: string;
}

const verdicts: Verdict[] = [];

/**
 * Records the verdict of one target and returns the word to print beside its
 * figure: `met`, `MISSED`, or, when the run did not do its work (`notDone`
 * says what: failed requests, spans not stored, …), `NOT COUNTED (why)`: the
 * figure is shown, but a run that did less cannot meet a target.
 */
export function verdict(name: string, ok: boolean, notDone?: string | false): string {
  if (notDone) {
    verdicts.push({ name, ok: false, notDone });
    return `NOT COUNTED (${notDone})`;
  }
  verdicts.push({ name, ok });
  return ok ? "met" : "MISSED";
}

/**
 * Prints how many targets were met, missed or not counted, each one that was
 * not met by name, and returns the exit code: 1 under `--strict` when any
 * target was not met, else 0. A bench ends with `process.exit(verdictSummary(name))`
 * (a run that failed outright exits 1 anyway).
 */
export function verdictSummary(bench: string): number {
  const met = verdicts.filter((v) => v.ok).length;
  const bad = verdicts.filter((v) => !v.ok);
  const parts = [`${met} target${met === 1 ? "" : "s"} met`];
  const missed = bad.filter((v) => !v.notDone).length;
  const void_ = bad.length - missed;
  if (missed > 0) parts.push(`${missed} missed`);
  if (void_ > 0) parts.push(`${void_} not counted (the run did not do its work)`);
  console.log(`\n${bench}: ${parts.join(", ")}${STRICT ? " (--strict)" : ""}`);
  for (const v of bad) console.log(`  ${v.notDone ? `not counted (${v.notDone})` : "missed"}: ${v.name}`);
  if (STRICT && bad.length > 0) {
    console.error(`${bench} --strict: ${bad.length} target${bad.length === 1 ? "" : "s"} not met`);
    return 1;
  }
  return 0;
}

/**
 * Measures every side once per round for `rounds` rounds, in the order given
 * and reversed every other round (A B, B A, A B …): each round's figures come
 * from the same minute of a busy machine and neither side always goes first.
 * A ratio is then taken within each round and the median kept (pairedMedian),
 * never best against best (the best runs of two sides need not come from the
 * same conditions). Returns one Map side → figure per round.
 */
export async function pairedRounds<T>(
  sides: readonly string[],
  rounds: number,
  measure: (side: string, round: number) => Promise<T>,
): Promise<Map<string, T>[]> {
  const out: Map<string, T>[] = [];
  for (let round = 1; round <= rounds; round++) {
    const figures = new Map<string, T>();
    for (const side of round % 2 === 0 ? [...sides].reverse() : sides) {
      figures.set(side, await measure(side, round));
    }
    out.push(figures);
  }
  return out;
}

/** The median of `values` (the mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** `f` of each round (e.g. the ratio of two sides measured in it) and their median. */
export function pairedMedian<T>(
  rounds: readonly Map<string, T>[],
  f: (round: Map<string, T>) => number,
): { median: number; each: number[] } {
  const each = rounds.map(f);
  return { median: median(each), each };
}
