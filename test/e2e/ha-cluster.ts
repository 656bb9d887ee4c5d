/**
 * A highly available herd on one machine, for the HA e2e tests and
 * `npm run bench:ha`: a three-member etcd on loopback, N `herd server`s on it
 * (one shared artifacts dir, one secrets key), one agent and one gateway
 * given every server (`--server A,B,C`).
 *
 *   etcd m0 m1 m2 ◄── herd server ×N (one leader: controllers + scheduler)
 *                        ▲ --server A,B,C          ▲ --server A,B,C
 *                   herd agent (loopback)      herd gateway (127.0.0.1)
 *
 * `stop()` removes everything it started: gateway, agent and its instances,
 * servers, etcd and the temp dir. Only processes started here are signalled.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type EtcdCluster, startEtcdCluster } from "../../src/store/etcd-cluster.ts";
import { EtcdStore } from "../../src/store/etcd-store.ts";
import type { LeaderInfo } from "../../src/store/leadership.ts";
import { freePort, killRecordedInstances, ROOT, runCli, sleep } from "./harness.ts";

const NODE = process.execPath;
const MAIN = join(ROOT, "src/cli/main.ts");

/** One process of the cluster and what it printed. */
export interface HaProcess {
  proc: ChildProcess;
  output(): string;
  alive(): boolean;
  kill9(): Promise<void>;
  /** SIGSTOP / SIGCONT: frozen, as by a long GC pause or a VM stall. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

export interface HaServer extends HaProcess {
  index: number;
  url: string;
  dataDir: string;
}

export interface HaCluster {
  etcd: EtcdCluster;
  servers: HaServer[];
  /** Every server's URL, comma-separated (what agents, the gateway and the CLI are given). */
  serverList: string;
  token: string;
  gatewayUrl: string;
  agent: HaProcess;
  /** The agent's data dir (its peers.json among it). */
  agentDir: string;
  gateway: HaProcess;
  /** The server the leader key names, if any. */
  leader(): Promise<HaServer | undefined>;
  /** Waits until a live server other than `not` leads; resolves with it and how long that took. */
  nextLeader(not: HaServer | undefined, timeoutMs?: number): Promise<{ server: HaServer; ms: number }>;
  /** The API as JSON through the first live server. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** The CLI with every server in HERD_SERVER. */
  cli(args: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The etcd store the servers share (for checks that read it directly). */
  store: EtcdStore;
  stop(): Promise<void>;
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => proc.once("exit", () => r()));
}

function started(cmd: string, args: string[], env: Record<string, string> = {}): HaProcess {
  let out = "";
  const proc = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...process.env, HERD_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout?.on("data", (d) => (out += d));
  proc.stderr?.on("data", (d) => (out += d));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  return {
    proc,
    output: () => out,
    alive,
    kill9: async () => {
      if (!alive()) return;
      proc.kill("SIGKILL");
      await exited(proc);
    },
    pause: () => void proc.kill("SIGSTOP"),
    resume: () => void proc.kill("SIGCONT"),
    stop: async () => {
      if (!alive()) return;
      proc.kill("SIGCONT");
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await exited(proc);
      clearTimeout(timer);
    },
  };
}

async function until(p: HaProcess, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    const m = pattern.exec(p.output());
    if (m) return m;
    if (!p.alive()) throw new Error(`${what} exited:\n${p.output()}`);
    await sleep(50);
  }
  throw new Error(`${what} did not start within 90s:\n${p.output()}`);
}

/** Starts etcd, `servers` servers (lease `leaseTtl` s), an agent and a gateway; on failure removes what it started. */
export async function startHaCluster(
  options: { servers?: number; leaseTtl?: number; isolateEtcdMember?: number } = {},
): Promise<HaCluster> {
  const work = mkdtempSync(join(tmpdir(), "herd-ha-"));
  // With isolateEtcdMember: that member in its own network namespace, to be cut off (etcd-cluster.ts).
  const etcd = await startEtcdCluster(
    3,
    options.isolateEtcdMember === undefined ? {} : { isolate: options.isolateEtcdMember },
  );
  const storeUrl = `etcd://${etcd.endpoints.map((e) => e.replace("http://", "")).join(",")}`;
  const servers: HaServer[] = [];
  const procs: HaProcess[] = [];
  let store: EtcdStore | undefined;
  const stop = async () => {
    for (const p of [...procs].reverse()) await p.stop().catch(() => {});
    killRecordedInstances(work);
    await store?.close();
    await etcd.stop();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    store = await EtcdStore.open({ endpoints: etcd.endpoints });
    const artifacts = join(work, "artifacts");
    const startServer = async (index: number) => {
      const dataDir = join(work, `server-${index}`);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      // Every server reads the secrets the others wrote: one key for all (docs/high-availability.md).
      if (index > 0) copyFileSync(join(work, "server-0", "secrets.key"), join(dataDir, "secrets.key"));
      const p = started(NODE, [
        "--no-warnings",
        MAIN,
        "server",
        "--data",
        dataDir,
        "--store",
        storeUrl,
        "--lease-ttl",
        String(options.leaseTtl ?? 2),
        "--artifacts",
        artifacts,
        "--port",
        "0",
      ]);
      procs.push(p);
      const url = (await until(p, /herd server: (http:\/\/\S+)\/api\/v1/, `server ${index}`))[1];
      const server: HaServer = { ...p, index, url, dataDir };
      servers.push(server);
      return server;
    };
    await startServer(0);
    for (let i = 1; i < (options.servers ?? 3); i++) await startServer(i);
    const token = readFileSync(join(work, "server-0", "admin-token"), "utf8").trim();
    const serverList = servers.map((s) => s.url).join(",");

    const api = async <T>(method: string, path: string, body?: unknown) => {
      let last: unknown;
      for (const s of servers) {
        if (!s.alive()) continue;
        try {
          const res = await fetch(`${s.url}/api/v1${path}`, {
            method,
            headers: {
              authorization: `Bearer ${token}`,
              ...(body !== undefined ? { "content-type": "application/json" } : {}),
            },
            body: body !== undefined ? JSON.stringify(body) : undefined,
            signal: AbortSignal.timeout(10_000),
          });
          const text = await res.text();
          return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
        } catch (err) {
          last = err;
        }
      }
      throw new Error(`no server answered ${method} ${path}: ${last}`);
    };
    const credential = async (body: Record<string, unknown>): Promise<string> => {
      const r = await api<{ token: string }>("POST", "/tokens", body);
      if (r.status !== 201) throw new Error(`POST /tokens: ${JSON.stringify(r.body)}`);
      return r.body.token;
    };

    const gateway = started(NODE, [
      "--no-warnings",
      MAIN,
      "gateway",
      "--server",
      serverList,
      "--token",
      await credential({ name: "ha gateway", kind: "gateway" }),
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--workers",
      "1",
      "--metrics-port",
      "off",
      "--data",
      join(work, "gateway"),
    ]);
    procs.push(gateway);
    const gatewayUrl = (await until(gateway, /herd gateway: (http:\/\/\S+)/, "herd gateway"))[1];

    const portBase = 20_000 + Math.floor(Math.random() * 400) * 100;
    const agent = started(NODE, [
      "--no-warnings",
      MAIN,
      "agent",
      "--server",
      serverList,
      "--join-token",
      await credential({ name: "ha join", kind: "join", expiresIn: "1h", uses: 1 }),
      "--name",
      "node-1",
      "--data",
      join(work, "node-1"),
      "--address",
      "127.0.0.1",
      "--ports",
      `${portBase}-${portBase + 99}`,
      "--metrics-port",
      String(await freePort()),
    ]);
    procs.push(agent);
    await until(agent, /herd agent \S+ joined/, "herd agent");

    const leader = async () => {
      const value = await store!.connection().client.get("/herd/leader").string();
      if (value === null) return undefined;
      const info = JSON.parse(value) as LeaderInfo;
      return servers.find((s) => s.url === info.url);
    };
    return {
      etcd,
      servers,
      serverList,
      token,
      gatewayUrl,
      agent,
      agentDir: join(work, "node-1"),
      gateway,
      store,
      leader,
      nextLeader: async (not, timeoutMs = 30_000) => {
        const start = Date.now();
        for (;;) {
          const l = await leader().catch(() => undefined);
          if (l && l !== not && l.alive()) return { server: l, ms: Date.now() - start };
          if (Date.now() - start > timeoutMs) throw new Error(`no new leader within ${timeoutMs} ms`);
          await sleep(20);
        }
      },
      api,
      cli: (args, timeoutMs) =>
        runCli(args, {
          env: { HERD_SERVER: serverList, HERD_TOKEN: token },
          ...(timeoutMs ? { timeoutMs } : {}),
        }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
