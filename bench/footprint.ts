// bench:footprint — the memory an idle `herd up` holds (issue 11, "Lean and fast").
// Starts a real `herd up` on a temp data dir, deploys examples/hello (2
// instances) and a second app (a plain Node server, 1 instance), checks both
// answer through the gateway, waits until the platform is idle (IDLE_S, a few
// scrape and alert intervals), then reads every herd process:
//   RSS  VmRSS of /proc/<pid>/status: what the issue's figures are and what the goal uses;
//   PSS  Pss of /proc/<pid>/smaps_rollup: shared pages (the one node binary,
//        mapped by every process) divided among the processes that map them,
//        so the sum of PSS is what the processes cost together.
// herd's processes are herd up (control plane + agent) and the gateway's
// processes (the gateway, or its primary and workers). The apps' processes
// are listed but not counted.
// It runs two profiles, each on its own data dir: the default `herd up`
// (goal: ≤ 250 MB RSS in all) and `herd up --small` (goal: ≤ 150 MB), and
// prints each process, the sums and the ratio to the goal.
//
// Usage: node bench/footprint.ts [--profile default|small] [--idle SECONDS] [--probe DIR] [--baseline DIR] [--strict] [-- EXTRA HERD UP FLAGS]
// --probe DIR: herd's processes load bench/footprint-probe.mjs and, once measured,
// each writes DIR/<profile>/<pid>.json: process.memoryUsage(), V8's heap spaces,
// RSS by kind of mapping and every module it loaded (`node bench/footprint-report.ts DIR`
// summarises them), to see where the memory goes.
// --baseline DIR: another checkout of herd (e.g. main) measured in the same run, before this one,
// for each profile: its processes, and a table of both per process with the change, so a
// before/after comes from one run at one load.
// FOOTPRINT_NODE_OPTIONS: more NODE_OPTIONS for herd's processes.

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import {
  cleanupHerd,
  gatewayRecord,
  type Herd,
  killRecordedInstances,
  ROOT,
  runCli,
  sleep,
  startHerd,
  waitFor,
} from "../test/e2e/harness.ts";
import { verdict, verdictSummary } from "./harness.ts";

const MB = 1024 * 1024;
const split = process.argv.indexOf("--");
const { values } = parseArgs({
  args: process.argv.slice(2, split === -1 ? undefined : split),
  options: {
    profile: { type: "string" },
    idle: { type: "string", default: "40" },
    probe: { type: "string" },
    baseline: { type: "string" },
    // Exit 1 when a goal is missed or a run did not do its work (bench/harness.ts).
    strict: { type: "boolean", default: false },
  },
});
const EXTRA = split === -1 ? [] : process.argv.slice(split + 1);
const IDLE_S = Number(values.idle);

/** The profiles measured and their goals (MB of RSS, herd's processes together). */
const PROFILES = [
  { name: "default", args: [], goalMb: 250 },
  { name: "small", args: ["--small"], goalMb: 150 },
].filter((p) => values.profile === undefined || p.name === values.profile);

interface Proc {
  pid: number;
  role: string;
  rss: number;
  pss: number;
  command: string;
}

const herds: Herd[] = [];
const dirs: string[] = [];
// The user's own herd config (~/.config/herd) neither steers this bench's CLI calls nor is written by its herd up.
const home = mkdtempSync(join(tmpdir(), "herd-footprint-home-"));
process.env.HOME = home;
delete process.env.XDG_CONFIG_HOME;
async function cleanup(): Promise<void> {
  for (const h of herds.splice(0)) await cleanupHerd(h);
  for (const d of dirs.splice(0)) {
    // A herd up that never came up may have left its gateway and apps: herd down stops what is recorded.
    if (existsSync(join(d, "gateway"))) await runCli(["down", "--data", d]);
    killRecordedInstances(d);
    rmSync(d, { recursive: true, force: true });
  }
}
process.once("SIGINT", () => void cleanup().finally(() => process.exit(130)));

/** Bytes of a `Key:   N kB` line of a /proc file. */
function kbField(file: string, key: string): number {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(file, "utf8"));
  return match ? Number(match[1]) * 1024 : 0;
}

/** The parent of every process now: pid → ppid. */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      out.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function descendants(pid: number, ppids: Map<number, number>): number[] {
  const out: number[] = [];
  for (const [child, parent] of ppids) {
    if (parent === pid) out.push(child, ...descendants(child, ppids));
  }
  return out;
}

function read(pid: number, role: string): Proc {
  const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  return {
    pid,
    role,
    rss: kbField(`/proc/${pid}/status`, "VmRSS"),
    pss: kbField(`/proc/${pid}/smaps_rollup`, "Pss"),
    command: command.replaceAll(ROOT, ".").slice(0, 90),
  };
}

/** herd's processes (herd up, the gateway and its workers) and the apps' (under herd up). */
function measure(herd: Herd): { herd: Proc[]; apps: Proc[] } {
  const ppids = parents();
  const upPid = herd.proc.pid as number;
  const gatewayPid = gatewayRecord(herd.dataDir).pid;
  const workers = descendants(gatewayPid, ppids);
  const gatewayRole = workers.length === 0 ? "gateway" : "gateway primary";
  const mine = [
    read(upPid, "herd up (control plane + agent)"),
    read(gatewayPid, gatewayRole),
    ...workers.map((pid) => read(pid, "gateway worker")),
  ];
  const counted = new Set(mine.map((p) => p.pid));
  // The gateway is herd up's child until herd up exits (it has its own session, not its own parent).
  const apps = descendants(upPid, ppids).filter((pid) => !counted.has(pid));
  return { herd: mine, apps: apps.map((pid) => read(pid, "app")) };
}

/** A second app beside examples/hello: a plain Node server, one instance. */
function secondApp(): string {
  const dir = mkdtempSync(join(tmpdir(), "herd-footprint-app-"));
  dirs.push(dir);
  writeFileSync(
    join(dir, "server.js"),
    `import { createServer } from "node:http";\ncreateServer((req, res) => res.end("second\\n")).listen(Number(process.env.PORT));\n`,
  );
  writeFileSync(join(dir, "package.json"), `{ "name": "second", "private": true, "type": "module" }\n`);
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      "app: second",
      "services:",
      "  web:",
      "    command: node server.js",
      "    instances: 1",
      "    health: { path: / }",
      "    routes: [{ host: second.localhost, path: / }]",
      "",
    ].join("\n"),
  );
  return dir;
}

const mb = (bytes: number) => (bytes / MB).toFixed(1).padStart(7);

const BASELINE = values.baseline === undefined ? undefined : resolve(values.baseline);
if (BASELINE !== undefined && !existsSync(join(BASELINE, "src/cli/main.ts"))) {
  throw new Error(`--baseline ${BASELINE}: not a herd checkout (no src/cli/main.ts)`);
}

/** One profile's run: herd's processes measured; `root` is the checkout that runs (the baseline's or this one). */
async function run(
  profile: (typeof PROFILES)[number],
  root: string = ROOT,
): Promise<{ rss: number; pss: number; procs: Proc[] }> {
  const label = root === ROOT ? "" : ` [baseline ${root}]`;
  const dataDir = mkdtempSync(join(tmpdir(), "herd-footprint-"));
  dirs.push(dataDir);
  const probeDir =
    values.probe === undefined
      ? undefined
      : join(resolve(values.probe), root === ROOT ? profile.name : `${profile.name}-baseline`);
  const nodeOptions = [
    process.env.FOOTPRINT_NODE_OPTIONS ?? "",
    probeDir ? `--import=${pathToFileURL(join(ROOT, "bench/footprint-probe.mjs")).href}` : "",
  ].join(" ");
  const herd = await startHerd({
    dataDir,
    root,
    extraArgs: [...profile.args, ...EXTRA],
    env: {
      ...(nodeOptions.trim() ? { NODE_OPTIONS: nodeOptions.trim() } : {}),
      ...(probeDir ? { FOOTPRINT_PROBE_DIR: probeDir } : {}),
    },
  });
  herds.push(herd);
  for (const dir of [join(ROOT, "examples/hello"), secondApp()]) {
    const d = await herd.cli(["deploy", dir], { timeoutMs: 180_000 });
    if (d.code !== 0) throw new Error(`deploy of ${dir} failed: ${d.stdout}${d.stderr}`);
  }
  for (const host of ["hello.localhost", "second.localhost"]) {
    await waitFor(`${host} to answer`, async () => (await herd.request(host)).status === 200, 60_000);
  }
  await sleep(IDLE_S * 1000);
  const { herd: mine, apps } = measure(herd);
  if (probeDir) {
    for (const p of mine) process.kill(p.pid, "SIGUSR2");
    await waitFor(
      "the probes' reports",
      async () => mine.every((p) => existsSync(join(probeDir, `${p.pid}.json`))),
      20_000,
    );
  }
  // The figure counts only if herd was still doing its work: both apps answer through the gateway.
  const silent: string[] = [];
  for (const host of ["hello.localhost", "second.localhost"]) {
    if ((await herd.request(host)).status !== 200) silent.push(host);
  }
  const rss = mine.reduce((s, p) => s + p.rss, 0);
  const pss = mine.reduce((s, p) => s + p.pss, 0);
  const line = (p: Proc) =>
    `  ${p.pid.toString().padStart(8)} ${mb(p.rss)} ${mb(p.pss)}  ${p.role.padEnd(32)} ${p.command}`;
  process.stdout.write(
    [
      "",
      `profile ${profile.name}${label}: herd up ${[...profile.args, ...EXTRA].join(" ")} (idle ${IDLE_S} s after both apps answered)`,
      "       pid  RSS MB  PSS MB  process",
      ...mine.map(line),
      `  ${"herd".padStart(8)} ${mb(rss)} ${mb(pss)}  total of ${mine.length} processes; goal ≤ ${profile.goalMb} MB RSS: ${(rss / MB / profile.goalMb).toFixed(2)}× the goal (${
        root === ROOT
          ? verdict(
              `${profile.name}: ≤ ${profile.goalMb} MB RSS`,
              rss / MB <= profile.goalMb,
              silent.length > 0 && `${silent.join(", ")} did not answer after the idle time`,
            )
          : silent.length > 0
            ? `not counted: ${silent.join(", ")} did not answer`
            : "the baseline, not a verdict"
      })`,
      "  not counted, the apps' processes:",
      ...apps.map(line),
      "",
    ].join("\n"),
  );
  await cleanup();
  return { rss, pss, procs: mine };
}

/** The baseline's and this checkout's processes side by side (by role), with the change. */
function compare(before: Proc[], after: Proc[]): string {
  const roles = [...new Set([...before, ...after].map((p) => p.role))];
  const sum = (ps: Proc[], role?: string) =>
    ps.filter((p) => role === undefined || p.role === role).reduce((s, p) => s + p.rss, 0);
  const row = (name: string, b: number, a: number) =>
    `  ${name.padEnd(34)} ${mb(b)} ${mb(a)} ${(a - b >= 0 ? "+" : "") + ((a - b) / MB).toFixed(1).padStart(6)}  ${b > 0 ? (a / b).toFixed(2) : "-"}×`;
  return [
    "  RSS MB, baseline → this checkout, same run:",
    `  ${"process".padEnd(34)} ${"before".padStart(7)} ${"after".padStart(7)} ${"change".padStart(7)}  ratio`,
    ...roles.map((role) => row(role, sum(before, role), sum(after, role))),
    row("herd, all processes", sum(before), sum(after)),
    "",
  ].join("\n");
}

const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
process.stdout.write(`bench:footprint — load average before: ${load}\n`);
try {
  for (const profile of PROFILES) {
    const before = BASELINE === undefined ? undefined : await run(profile, BASELINE);
    const after = await run(profile);
    if (before) process.stdout.write(compare(before.procs, after.procs));
  }
} finally {
  await cleanup();
  rmSync(home, { recursive: true, force: true });
}
process.exit(verdictSummary("bench:footprint"));
