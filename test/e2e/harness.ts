/**
 * End-to-end harness: runs a real `herd up` (server + agent + gateway) as a
 * child process on free ports with its own data dir, drives it through the
 * real CLI and HTTP, and cleans up everything it started — also the app
 * processes, which live in their own process groups — when the test ends.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  type Dirent,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { TLSSocket } from "node:tls";
import { firewallRemoveScript, firewallTable } from "../../src/agent/firewall.ts";
import { caDispatcher, trusting } from "../../src/common/api-ca.ts";
import { findBinary } from "../../src/common/debian-packages.ts";
import { freePort } from "../../src/common/free-port.ts";

export { freePort };

export const ROOT = resolve(import.meta.dirname, "../..");
/** The herds startHerd started that no cleanupHerd has ended yet (cleanupHerd stops a later one on the same data dir first). */
const started = new Set<Herd>();
const NODE = process.execPath;
const MAIN = join(ROOT, "src/cli/main.ts");

export interface Herd {
  dataDir: string;
  url: string;
  gatewayUrl: string;
  token: string;
  proc: ChildProcess;
  /** Output of the herd up process so far. */
  output(): string;
  /** Runs the CLI against this herd; resolves with its exit code and output. */
  cli(
    args: string[],
    options?: { cwd?: string; timeoutMs?: number },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  /** GET/POST the API as JSON. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** A request through the gateway with a Host header. */
  request(host: string, path?: string): Promise<{ status: number; body: string }>;
  /** kill -9 of the herd up process (apps keep running). */
  kill9(): Promise<void>;
  /** Graceful stop (SIGTERM): stops the platform and its apps. */
  stop(): Promise<void>;
}

/**
 * Starts `herd up` in a new (or the given) data dir on free ports; from
 * `root` (a checkout, default this one) when given; as the unprivileged
 * `uid` (which must own the data dir) when given, as a user without root would.
 * With `--no-example` unless `example` is set.
 */
export async function startHerd(
  options: {
    dataDir?: string;
    extraArgs?: string[];
    env?: Record<string, string>;
    root?: string;
    uid?: number;
    /** Let the first start deploy examples/hello, as `herd up` does for a user (default: --no-example). */
    example?: boolean;
  } = {},
): Promise<Herd> {
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "herd-e2e-"));
  rmSync(join(dataDir, "server.json"), { force: true });
  let out = "";
  const root = options.root ?? ROOT;
  const proc = spawn(
    NODE,
    [
      join(root, "src/cli/main.ts"),
      "up",
      "--data",
      dataDir,
      "--port",
      "0",
      "--gateway-port",
      "0",
      "--gateway-metrics-port",
      "0",
      "--https-port",
      "0",
      ...(options.example ? [] : ["--no-example"]),
      ...(options.extraArgs ?? []),
    ],
    {
      cwd: root,
      // herd up signs the CLI in (a context in XDG_CONFIG_HOME): the test's, never the user's.
      env: {
        ...process.env,
        HERD_LOG_LEVEL: "info",
        XDG_CONFIG_HOME: join(dataDir, "cli-config"),
        ...(options.uid !== undefined ? { HOME: dataDir } : {}),
        ...options.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
    },
  );
  proc.stdout!.on("data", (d) => (out += d));
  proc.stderr!.on("data", (d) => (out += d));
  const deadline = Date.now() + 60_000;
  let info: { url: string; gatewayUrl: string } | undefined;
  // A herd up that never comes up is no test's to clean: its processes and (new) data dir go here.
  const giveUp = async (why: string): Promise<never> => {
    proc.kill("SIGKILL");
    await exited(proc);
    killRecordedInstances(dataDir);
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`${why}:\n${out}`);
  };
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) return giveUp(`herd up exited with ${proc.exitCode}`);
    if (/herd is up/.test(out) && existsSync(join(dataDir, "server.json"))) {
      info = JSON.parse(readFileSync(join(dataDir, "server.json"), "utf8"));
      break;
    }
    await sleep(100);
  }
  if (!info) return giveUp("herd up did not come up within 60s");
  const token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  const { url, gatewayUrl } = info;
  // `herd up --tls`: the CLI and api() verify the API with the data dir's CA.
  const caFile = url.startsWith("https:") ? join(dataDir, "tls", "ca-cert.pem") : undefined;
  const trust = trusting(caFile ? caDispatcher(readFileSync(caFile, "utf8")) : undefined);

  const herd: Herd = {
    dataDir,
    url,
    gatewayUrl,
    token,
    proc,
    output: () => out,
    cli: (args, o = {}) =>
      runCli(args, {
        cwd: o.cwd ?? ROOT,
        env: { HERD_SERVER: url, HERD_TOKEN: token, ...(caFile ? { HERD_CA: caFile } : {}) },
        timeoutMs: o.timeoutMs,
      }),
    api: async (method, path, body) => {
      const res = await fetch(`${url}/api/v1${path}`, {
        ...trust,
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { "content-type": "application/json" } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    request: (host, path = "/") => gatewayRequest(gatewayUrl, host, path),
    kill9: async () => {
      proc.kill("SIGKILL");
      await exited(proc);
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        await Promise.race([exited(proc), grace(20_000)]);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      }
    },
  };
  started.add(herd);
  return herd;
}

/** Ends every process a test's herd left: the platform, then any app process recorded by its agents. */
export async function cleanupHerd(
  herd: Herd | undefined,
  options: { keepDir?: boolean } = {},
): Promise<void> {
  if (!herd) return;
  // A later herd up on the same data dir (a restart) runs on the same records: stopped first, it stops its
  // instances and removes their cgroups. Else they are killed under it and the dir removed while it still
  // writes there; it dies on that and leaves the cgroup of the instance it started meanwhile.
  for (const other of started) if (other !== herd && other.dataDir === herd.dataDir) await other.stop();
  started.delete(herd);
  await herd.stop();
  killRecordedInstances(herd.dataDir);
  if (!options.keepDir) rmSync(herd.dataDir, { recursive: true, force: true });
}

/**
 * Kills the process groups of instances recorded under a data dir (safety net
 * after a failed test), and removes the firewall tables of their agents (a
 * killed agent leaves its table for the instances it left running).
 */
export function killRecordedInstances(dataDir: string): void {
  const driverDirs = new Set<string>();
  for (const file of findFiles(
    dataDir,
    (name) => name.endsWith(".json") && !name.startsWith("server") && !name.startsWith("gateway"),
  )) {
    try {
      const rec = JSON.parse(readFileSync(file, "utf8")) as {
        pid?: unknown;
        procStartTime?: unknown;
        cgroup?: { dirs?: string[] } | null;
      };
      if (typeof rec.pid !== "number" || rec.procStartTime === undefined) continue;
      driverDirs.add(dirname(file));
      if (procStartTime(rec.pid) === String(rec.procStartTime)) {
        try {
          process.kill(-rec.pid, "SIGKILL");
        } catch {
          process.kill(rec.pid, "SIGKILL");
        }
      }
      // The instance's cgroups (a killed agent never removed them); empty once the processes are gone.
      for (const dir of rec.cgroup?.dirs ?? []) removeCgroup(dir);
    } catch {
      // not a record, or already gone
    }
  }
  const nft = findBinary("nft");
  for (const dir of driverDirs) {
    if (nft) spawnSync(nft, ["-f", "-"], { input: firewallRemoveScript(firewallTable(resolve(dir))) });
  }
}

function removeCgroup(dir: string): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      spawnSync("sleep", ["0.1"]);
    }
  }
}

function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function findFiles(dir: string, match: (name: string) => boolean): string[] {
  const out: string[] = [];
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory() && e.name !== "app" && e.name !== "slugs" && e.name !== "artifacts")
      out.push(...findFiles(p, match));
    else if (e.isFile() && match(e.name)) out.push(p);
  }
  return out;
}

/** Runs the herd CLI as a user would. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(NODE, ["--no-warnings", MAIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 180_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** One request through the gateway (a fresh connection each time, as separate clients would). */
export function gatewayRequest(
  gatewayUrl: string,
  host: string,
  path = "/",
): Promise<{ status: number; body: string }> {
  const u = new URL(gatewayUrl);
  return new Promise((resolvePromise, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path, headers: { host }, agent: false, timeout: 10_000 },
      (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolvePromise({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** Polls `check` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`,
  );
}

/**
 * Waits until the gateway answers `host` (at `path`) with a 200 whose body is `expected` (or matches it),
 * and returns that body. A deploy, rollback or promote is done once the store says so; each gateway applies
 * the change from its watch a moment later (GET /gateways shows when), so a request sent right after it may
 * still meet the old route table: no route yet, or an old instance that is draining.
 */
export async function served(
  herd: Pick<Herd, "request">,
  host: string,
  expected: string | RegExp,
  path = "/",
  timeoutMs = 30_000,
): Promise<string> {
  let last = "no answer yet";
  try {
    return await waitFor(
      `${host}${path} to answer 200 ${expected}`,
      async () => {
        const r = await herd.request(host, path);
        last = `${r.status} ${r.body.slice(0, 200)}`;
        const ok =
          r.status === 200 && (typeof expected === "string" ? r.body === expected : expected.test(r.body));
        return ok ? r.body : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message} (last answer: ${last})`);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A grace period to race against an exit: its timer is unref'd, so a process
 * that exits in time does not keep the test file alive until the period ends.
 */
export const grace = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => proc.once("exit", () => r()));
}

/**
 * A newer checkout of herd in a new temp dir (removed by the caller): this
 * one's src/, scripts/, examples/ and package.json, its node_modules linked, and one
 * gateway file changed, so its gateway's code differs from this one's.
 */
export function newerCheckout(): string {
  const checkout = mkdtempSync(join(tmpdir(), "herd-checkout-"));
  for (const part of ["src", "scripts", "examples", "package.json"])
    cpSync(join(ROOT, part), join(checkout, part), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"));
  appendFileSync(join(checkout, "src/gateway/gateway.ts"), "\n// a newer gateway\n");
  return checkout;
}

/** The gateway record herd up keeps in a data dir (src/daemons/platform-gateway.ts). */
export function gatewayRecord(dataDir: string): { pid: number; metricsUrl?: string } {
  return JSON.parse(readFileSync(join(dataDir, "gateway", "process.json"), "utf8"));
}

/** The pids of the `herd gateway` processes (primaries) serving the data dir `dataDir`. */
export function gatewayPids(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      // herd up starts its gateway as src/daemons/gateway-main.ts; `herd gateway` as the CLI's command.
      const isGateway = args.includes("gateway") || args.some((a) => a.endsWith("gateway-main.ts"));
      if (isGateway && args.includes(join(dataDir, "gateway"))) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Whether a pid is alive. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Synchronous best-effort check that nothing listens on a port (for leak checks). */
export function listening(port: number): boolean {
  return spawnSync("sh", ["-c", `ss -ltn 'sport = :${port}' | grep -q LISTEN`]).status === 0;
}

/** What steady traffic saw: answers by outcome, and when each failure happened. */
export interface TrafficCounts {
  /** Requests sent and answered (any outcome). */
  total: number;
  ok: number;
  /** Not 200, or no answer (an error, a timeout). */
  failed: number;
  /** Failures by status code or error code. */
  failures: Record<string, number>;
  /** When each failure happened, in ms since the traffic began. */
  failedAt: number[];
  /** Answered requests per whole second since the traffic began. */
  perSecond: number[];
}

/** A running load: read its counts at any time, stop it to get the final ones. */
export interface Traffic {
  counts(): TrafficCounts;
  /** Ms since the traffic began. */
  elapsed(): number;
  stop(): Promise<TrafficCounts>;
}

/**
 * Steady traffic through the gateway, as many clients would send it:
 * `connections` keep-alive connections, each sending its next request as
 * soon as the last one is answered, paced so all together send about `rate`
 * requests a second. Bounded: it stops by itself after `maxSeconds`.
 * Nothing is retried: every request that does not get a 200 counts as failed.
 * `method` POST: each with a small body, which the gateway never sends twice
 * (a bodiless POST is retried when its connection was refused).
 */
export function steadyTraffic(
  gatewayUrl: string,
  host: string,
  options: {
    connections?: number;
    rate?: number;
    maxSeconds?: number;
    path?: string;
    method?: string;
    /** Called with each answer: when its request was sent (Date.now()), how long it took (ms), its outcome (undefined = 200). */
    onAnswer?: (sentAt: number, ms: number, outcome: string | undefined) => void;
  } = {},
): Traffic {
  const connections = options.connections ?? 8;
  const gapMs = options.rate ? (1000 * connections) / options.rate : 0;
  const u = new URL(gatewayUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const began = performance.now();
  const until = began + (options.maxSeconds ?? 300) * 1000;
  const counts: TrafficCounts = { total: 0, ok: 0, failed: 0, failures: {}, failedAt: [], perSecond: [] };
  let stopping = false;
  const elapsed = () => performance.now() - began;
  const answered = (outcome: string | undefined) => {
    const second = Math.floor(elapsed() / 1000);
    while (counts.perSecond.length <= second) counts.perSecond.push(0);
    counts.perSecond[second]++;
    counts.total++;
    if (outcome === undefined) counts.ok++;
    else {
      counts.failed++;
      counts.failures[outcome] = (counts.failures[outcome] ?? 0) + 1;
      counts.failedAt.push(Math.round(elapsed()));
    }
  };
  const one = () =>
    new Promise<void>((done) => {
      let settled = false;
      const sentAt = Date.now();
      const sent = performance.now();
      const finish = (outcome: string | undefined) => {
        if (settled) return;
        settled = true;
        answered(outcome);
        options.onAnswer?.(sentAt, performance.now() - sent, outcome);
        done();
      };
      const failedWith = (err: NodeJS.ErrnoException) => finish(err.code ?? err.message);
      const req = http.request(
        {
          host: u.hostname,
          port: u.port,
          path: options.path ?? "/",
          method: options.method ?? "GET",
          headers: options.method === "POST" ? { host, "content-length": 2 } : { host },
          agent,
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on("end", () => finish(res.statusCode === 200 ? undefined : String(res.statusCode)));
          res.on("error", failedWith);
        },
      );
      req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "timeout" })));
      req.on("error", failedWith);
      req.end(options.method === "POST" ? "{}" : undefined);
    });
  const loop = async () => {
    while (!stopping && performance.now() < until) {
      const next = performance.now() + gapMs;
      await one();
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
  };
  const loops = Promise.all(Array.from({ length: connections }, loop));
  const snapshot = (): TrafficCounts => ({
    ...counts,
    failures: { ...counts.failures },
    failedAt: [...counts.failedAt],
    perSecond: [...counts.perSecond],
  });
  return {
    counts: snapshot,
    elapsed,
    stop: async () => {
      stopping = true;
      await loops;
      agent.destroy();
      return snapshot();
    },
  };
}

/**
 * Waits until every gateway that reports serves the control plane's config version (GET /gateways):
 * a gateway reports a version once every one of its workers serves it, so after this no fresh
 * connection, whichever worker takes it, meets an older table.
 */
export async function gatewaysInSync(herd: Pick<Herd, "api">, timeoutMs = 30_000): Promise<void> {
  let last = "";
  await waitFor(
    "every gateway in sync with the control plane",
    async () => {
      const r = await herd.api<{
        items: { id: string; inSync: boolean; silent: boolean; version: number; configVersion: number }[];
      }>("GET", "/gateways");
      const live = (r.body?.items ?? []).filter((g) => !g.silent);
      last = JSON.stringify(live.map((g) => [g.id, g.version, g.configVersion]));
      return live.length > 0 && live.every((g) => g.inSync);
    },
    timeoutMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${last}`);
  });
}

/**
 * Waits until `traffic` has had no failed request for `quietMs` (at most `timeoutMs`): after a change
 * settles (a rollback, a restart), rather than a fixed time that a loaded machine may outlast.
 */
export async function quietTraffic(
  traffic: Traffic,
  what: string,
  quietMs = 1000,
  timeoutMs = 30_000,
): Promise<void> {
  let last = { failed: traffic.counts().failed, since: Date.now() };
  await waitFor(
    `${quietMs} ms without a failed request ${what}`,
    () => {
      const failed = traffic.counts().failed;
      if (failed !== last.failed) last = { failed, since: Date.now() };
      return Date.now() - last.since >= quietMs;
    },
    timeoutMs,
  );
}

/**
 * GET / over HTTPS to address:port with SNI and Host `host`, trusting only
 * `ca`; with the presented certificate's issuer (CN) and subjectAltName.
 */
export function httpsGet(
  port: number,
  host: string,
  ca: string,
  address = "127.0.0.1",
): Promise<{ status: number; body: string; issuer: string; subjectAltName: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: address,
        port,
        path: "/",
        servername: host,
        headers: { host },
        ca,
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        const peer = (res.socket as TLSSocket).getPeerCertificate();
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            issuer: String(peer.issuer?.CN ?? ""),
            subjectAltName: peer.subjectaltname,
          }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/**
 * herd's cgroups on this machine that hold nothing (no child cgroup, no
 * process): what a herd stopped with its apps left behind. One holding
 * another herd's instances is not counted.
 */
export function emptyHerdCgroups(): string[] {
  const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
  const dirs = v2
    ? ["/sys/fs/cgroup/herd", "/sys/fs/cgroup/herd-platform"]
    : [
        ...["memory", "cpu", "cpuacct", "pids"].map((c) => `/sys/fs/cgroup/${c}/herd`),
        "/sys/fs/cgroup/cpu/herd-platform",
      ];
  return dirs.filter(
    (dir) =>
      existsSync(dir) &&
      !readdirSync(dir, { withFileTypes: true }).some((d) => d.isDirectory()) &&
      readFileSync(join(dir, "cgroup.procs"), "utf8").trim() === "",
  );
}
