// The control plane under test for bench/control-plane.ts, in its own process
// so that its CPU and memory are its own: a real server (API, store,
// controllers, scheduler) on a free port and a temporary data dir, seeded with
// one tenant, `--apps` apps of one service `web` at 0 instances (release v1),
// and one agent token per node. Prints one JSON line
// `{url, admin, tokens: {node: secret}, pid, dir}` and runs until SIGTERM.
//
// HERD_ROOT=<checkout> runs another checkout's server (e.g. main before a change).
//
// HERD_BENCH_PROFILE=<file.cpuprofile> profiles the server (node:inspector) from
// the first SIGUSR2 (the bench sends it when the ramp starts) to the second (the
// ramp's end) or SIGTERM, and writes the profile then (`--cpu-prof` would cover
// the seeding and the rest too, and lose it all when a slow close is SIGKILLed).
//
// `--tenants N` adds tenants other1… other<N-1>, one service each at 0 instances.
//
// Usage: node bench/control-plane-server.ts --nodes N --apps A [--tenants N]

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const NODES = arg("--nodes", 1000);
const APPS = arg("--apps", 100);
const TENANTS = arg("--tenants", 1);
const ROOT = resolve(process.env.HERD_ROOT ?? join(import.meta.dirname, ".."));
const MiB = 1024 ** 2;

// A checkout from before 7 December 2026 has it in src/api/server.ts.
const assembly = ["src/daemons/control-plane.ts", "src/api/server.ts"]
  .map((f) => join(ROOT, f))
  .find((f) => existsSync(f));
const { startServer } = (await import(
  assembly ?? join(ROOT, "src/daemons/control-plane.ts")
)) as typeof import("../src/daemons/control-plane.ts");
const { createToken } = (await import(join(ROOT, "src/api/auth.ts"))) as typeof import("../src/api/auth.ts");
const { silentLogger } = (await import(
  join(ROOT, "src/common/log.ts")
)) as typeof import("../src/common/log.ts");

const profileFile = process.env.HERD_BENCH_PROFILE;
const profiler = profileFile ? new Session() : undefined;
let profiling = false;
const writeProfile = async () => {
  if (!profiler || !profileFile || !profiling) return;
  profiling = false;
  const { profile } = await profiler.post("Profiler.stop");
  writeFileSync(profileFile, JSON.stringify(profile));
};
if (profiler) {
  profiler.connect();
  await profiler.post("Profiler.enable");
  process.on("SIGUSR2", () => {
    if (profiling) void writeProfile();
    else {
      profiling = true;
      void profiler.post("Profiler.start");
    }
  });
}

const dir = mkdtempSync(join(tmpdir(), "herd-bench-cp-"));
const server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
const { store } = server;
const now = new Date().toISOString();
const spec = {
  command: "node app.js",
  instances: 0,
  resources: { cpu: 0.1, memory: 128 * MiB },
  health: { kind: "process", intervalMs: 1000, timeoutMs: 1000, failures: 3, startupMs: 60_000 },
  mode: "cattle",
  env: {},
  routes: [],
};
/** Service web of the app at release 1 and 0 instances. */
const putService = (tenant: string, app: string) =>
  store.put("service", `${tenant}/${app}/web`, {
    tenant,
    app,
    name: "web",
    release: 1,
    spec,
    instances: 0,
    state: "running",
    message: "",
    crashes: 0,
  });
await store.put("tenant", "bench", { name: "bench", createdAt: now });
for (let a = 0; a < APPS; a++) {
  const app = `app${a}`;
  await store.put("app", `bench/${app}`, {
    tenant: "bench",
    name: app,
    createdAt: now,
    release: 1,
    latestVersion: 1,
  });
  await store.put("release", `bench/${app}/00000001`, {
    tenant: "bench",
    app,
    version: 1,
    createdAt: now,
    description: "bench",
    source: "0".repeat(64),
    slug: "1".repeat(64),
    services: { web: spec },
  });
  await putService("bench", app);
}
for (let t = 1; t < TENANTS; t++) {
  const tenant = `other${t}`;
  await store.put("tenant", tenant, { name: tenant, createdAt: now });
  await putService(tenant, "site");
}
const tokens: Record<string, string> = {};
for (let n = 0; n < NODES; n++) {
  const node = `node${n}`;
  tokens[node] = (await createToken(store, { kind: "agent", name: `agent ${node}`, node })).secret;
}
process.stdout.write(
  `${JSON.stringify({ url: server.url, admin: server.adminToken, tokens, pid: process.pid, dir })}\n`,
);

const stop = async () => {
  await writeProfile();
  await server.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
process.once("SIGTERM", () => void stop());
process.once("SIGINT", () => void stop());
