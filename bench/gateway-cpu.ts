// `npm run bench:gateway-cpu`: CPU time per proxied request, in the proxy's own
// processes, for the herd gateway, nginx and @fastify/http-proxy, in one run.
//
// Why CPU time and not req/s: on a small machine shared with other work (the
// load generator, the upstream, other jobs) req/s moves with whoever else has
// the cores; the CPU a proxy spends per request moves much less. The figure is
// the proxy's process group's utime + stime (from /proc, all its processes:
// nginx's master and workers, the gateway's primary and workers) across a wrk
// run, divided by the requests wrk completed.
//
// Each proxy runs one worker process (nginx `worker_processes 1`, `herd gateway
// --workers 1`; Fastify is one process anyway), so the figures compare the
// proxies' per-request cost, not how many cores they use.
//
// Env: BENCH_SECONDS (8) per target, BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (32),
// BENCH_ROUNDS (2: targets measured in turn, each round; the lowest figure is kept).

import { type ChildProcess, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDebianPackages } from "../scripts/ensure-tools.ts";
import type { StoredObject } from "../src/store/store.ts";
import { BENCH_HOST, benchObjects, startBenchControlPlane } from "./gateway-control-plane.ts";
import { POLICY_HEADERS, POLICY_NOTE, withPolicies } from "./gateway-policies.ts";

const ROOT = join(import.meta.dirname, "..");
const env = process.env;
const SECONDS = Number(env.BENCH_SECONDS ?? 8);
const WARMUP = Number(env.BENCH_WARMUP_SECONDS ?? 2);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(env.BENCH_ROUNDS ?? 2);
const TOKEN = "bench-token";
/** Clock ticks per second of /proc's utime and stime (USER_HZ; 100 on Linux). */
const TICKS = 100;

interface Child {
  name: string;
  process: ChildProcess;
  output: string;
  exited: Promise<void>;
}

const children = new Set<Child>();
const closers: Array<() => Promise<void>> = [];
let tempDir: string | undefined;

/** A child in its own process group, so its CPU and its end cover all its processes. */
function startChild(name: string, command: string, args: string[], childEnv: NodeJS.ProcessEnv = {}): Child {
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

async function stopChild(child: Child): Promise<void> {
  const pid = child.process.pid;
  if (pid === undefined) return;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // gone
    }
  };
  signal("SIGTERM");
  const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3000).unref());
  if (!(await Promise.race([child.exited.then(() => true), timer]))) signal("SIGKILL");
  signal("SIGKILL");
}

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const close of closers) await close().catch(() => {});
    await Promise.all([...children].map(stopChild));
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => void cleanup().finally(() => process.exit(130)));
}

/** CPU seconds (user + system) used so far by every process in process group `pgid`. */
function groupCpuSeconds(pgid: number): number {
  let ticks = 0;
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
    // fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
    if (Number(fields[2]) !== pgid) continue;
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS;
}

function portOf(child: Child, timeoutMs = 20_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffer = "";
    const timer = setTimeout(
      () => reject(new Error(`${child.name} did not report its port:\n${child.output}`)),
      timeoutMs,
    );
    child.process.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const m = /\{"port":(\d+)\}/.exec(buffer);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
}

async function freePort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function get(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { headers, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(0));
  });
}

async function untilServes(url: string, headers: Record<string, string>, child: Child): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if ((await get(url, headers)) === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} did not answer 200:\n${child.output}`);
}

interface Target {
  id: string;
  name: string;
  url: string;
  headers: Record<string, string>;
  child: Child;
}

async function startNginx(nginx: string, base: string, upstreamPort: number): Promise<Target> {
  const dir = join(base, "nginx");
  mkdirSync(dir);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    chmodSync(base, 0o711);
    chownSync(dir, 65534, 65534);
  }
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `${asRoot ? "user nobody nogroup;" : ""}
worker_processes 1;
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
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
  );
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
  return { id: "b", name: "nginx (1 worker)", url, headers: {}, child };
}

async function startFastify(upstreamPort: number): Promise<Target> {
  const child = startChild("fastify", process.execPath, [join(ROOT, "bench/gateway-fastify.ts")], {
    UPSTREAM: `http://127.0.0.1:${upstreamPort}`,
  });
  const url = `http://127.0.0.1:${await portOf(child)}/`;
  await untilServes(url, {}, child);
  return { id: "e", name: "@fastify/http-proxy", url, headers: {}, child };
}

async function startGateway(
  base: string,
  id: string,
  name: string,
  objects: StoredObject[],
  extraHeaders: Record<string, string> = {},
): Promise<Target> {
  const controlPlane = await startBenchControlPlane(TOKEN, objects);
  closers.push(controlPlane.close);
  const port = await freePort();
  const child = startChild(name, process.execPath, [
    join(ROOT, "src/cli/main.ts"),
    "gateway",
    ...["--server", controlPlane.url, "--token", TOKEN, "--port", String(port)],
    ...["--host", "127.0.0.1", "--data", join(base, `${id}-data`), "--workers", "1"],
    ...["--metrics-port", "0"],
  ]);
  const url = `http://127.0.0.1:${port}/`;
  const headers = { Host: BENCH_HOST, ...extraHeaders };
  await untilServes(url, headers, child);
  return { id, name, url, headers, child };
}

interface Load {
  requests: number;
  rps: number;
  errors: number;
}

async function runWrk(wrk: string, target: Target, seconds: number): Promise<Load> {
  const args = ["-t1", `-c${CONNECTIONS}`, `-d${seconds}s`, "--timeout", "5s"];
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

interface Measured {
  usPerRequest: number;
  rps: number;
  errors: number;
}

async function measure(wrk: string, target: Target): Promise<Measured> {
  if (WARMUP > 0) await runWrk(wrk, target, WARMUP);
  const pgid = target.child.process.pid!;
  const before = groupCpuSeconds(pgid);
  const load = await runWrk(wrk, target, SECONDS);
  const used = groupCpuSeconds(pgid) - before;
  return { usPerRequest: (used * 1e6) / Math.max(1, load.requests), rps: load.rps, errors: load.errors };
}

async function main(): Promise<void> {
  const tools = await ensureDebianPackages({ nginx: "nginx", wrk: "wrk" });
  tempDir = mkdtempSync(join(tmpdir(), "herd-bench-cpu-"));
  const upstream = startChild("upstream", process.execPath, [join(ROOT, "bench/gateway-upstream.ts")]);
  const upstreamPort = await portOf(upstream);
  const objects = benchObjects(upstreamPort);
  const targets = [
    await startNginx(tools.nginx, tempDir, upstreamPort),
    await startGateway(tempDir, "c", "herd gateway (1 worker)", objects),
    await startGateway(tempDir, "d", "herd gateway + policies", withPolicies(objects), POLICY_HEADERS),
    await startFastify(upstreamPort),
  ];
  console.log(`note: ${POLICY_NOTE}`);
  console.log(
    `bench:gateway-cpu: wrk 1 thread, ${CONNECTIONS} connections, ${WARMUP} s warm-up + ${SECONDS} s per target, ` +
      `${ROUNDS} rounds; CPU of each proxy's processes (utime + stime) / requests`,
  );
  const best = new Map<string, Measured>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      const m = await measure(tools.wrk, target);
      console.log(
        `round ${round} (${target.id}) ${target.name}: ${m.usPerRequest.toFixed(1)} µs CPU/request, ` +
          `${Math.round(m.rps)} req/s${m.errors ? `  ! ${m.errors} errors` : ""}`,
      );
      const kept = best.get(target.id);
      if (!kept || m.usPerRequest < kept.usPerRequest) best.set(target.id, m);
    }
  }
  console.log("");
  console.log(`${"target".padEnd(32)}${"µs CPU/req".padStart(12)}${"req/s".padStart(10)}`);
  for (const target of targets) {
    const m = best.get(target.id)!;
    console.log(
      `(${target.id}) ${target.name}`.padEnd(32) +
        m.usPerRequest.toFixed(1).padStart(12) +
        String(Math.round(m.rps)).padStart(10),
    );
  }
  const us = (id: string) => best.get(id)!.usPerRequest;
  console.log("");
  // Per core, req/s is the inverse of CPU per request: these ratios are the throughput ratios at equal cores.
  console.log(
    `(d) vs nginx:   ${(us("b") / us("d")).toFixed(2)}× nginx's requests per CPU second  [issue: ≥ 0.5×]`,
  );
  console.log(
    `(d) vs fastify: ${(us("e") / us("d")).toFixed(2)}× the Node peer's requests per CPU second  [issue: ≥ 1.5×]`,
  );
  console.log(`(d) vs (c):     ${(us("c") / us("d")).toFixed(2)}×  [issue: within 10%]`);
}

let code = 1;
try {
  await main();
  code = 0;
} catch (err) {
  console.error(`bench:gateway-cpu: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
