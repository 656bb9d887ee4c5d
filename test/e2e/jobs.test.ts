// Jobs end to end: `herd run` prints a one-off's output and returns its exit
// code; a failing release phase stops the rollout (the old release keeps
// serving); a scheduled job (a seconds schedule) leaves runs with their
// logs and exit codes in its history.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Run } from "../../src/model/job.ts";
import { alive, cleanupHerd, type Herd, killRecordedInstances, ROOT, startHerd, waitFor } from "./harness.ts";

const herds: Herd[] = [];
const dirs: string[] = [];
/** Data dirs two herds share (one killed, one restarted on it): removed once both are down. */
const dataDirs: string[] = [];
after(async () => {
  for (const h of herds) await cleanupHerd(h, { keepDir: dataDirs.includes(h.dataDir) });
  for (const d of dataDirs) {
    killRecordedInstances(d);
    rmSync(d, { recursive: true, force: true });
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const HOST = "jobs-e2e.localhost";

/** examples/hello as app jobs-e2e with this release phase and greeting, and a job every 2 s. */
function appDir(release: string, greeting: string): string {
  const dir = mkdtempSync(join(tmpdir(), "herd-jobs-app-"));
  dirs.push(dir);
  cpSync(join(ROOT, "examples/hello"), dir, { recursive: true });
  writeFileSync(
    join(dir, "herd.yaml"),
    `app: jobs-e2e
release: ${JSON.stringify(release)}
jobs:
  tick:
    schedule: "*/2 * * * * *"
    command: echo tick $GREETING; exit 3
    concurrency: forbid
    history: 3
services:
  web:
    command: node server.js
    instances: 1
    resources: { cpu: 0.25, memory: 128Mi }
    health: { path: /healthz }
    env: { GREETING: ${greeting} }
    routes: [{ host: ${HOST}, path: / }]
`,
  );
  return dir;
}

test("herd run, a failing release phase, a cron job's history", async () => {
  const herd = await startHerd();
  herds.push(herd);

  // v1: its release phase passes, and its output is in the deploy's log as it runs.
  const v1 = await herd.cli([
    "deploy",
    appDir(
      `node -e "console.log('migrated ' + process.env.GREETING); setTimeout(() => console.log('indexed'), 2500)"`,
      "one",
    ),
  ]);
  assert.equal(v1.code, 0, v1.stdout + v1.stderr);
  // Under its step, indented, each line once (docs/jobs.md).
  assert.match(
    v1.stdout,
    /^-----> web: release phase output:\n {9}web release \| migrated one\n {9}web release \| indexed\n-----> web: release phase succeeded$/m,
    "the release phase's output is shown",
  );
  assert.equal(v1.stdout.match(/migrated one/g)?.length, 1, v1.stdout);
  // Live: the first line reached the log 2.5 s before the second, not both when the phase ended.
  const deployId = /\(deploy (\w+)\)/.exec(v1.stdout)?.[1];
  const shown = await herd.cli(["deploys", "show", deployId ?? "?", "--app", "jobs-e2e", "--json"]);
  const log = (JSON.parse(shown.stdout) as { log: { time: string; message: string }[] }).log;
  const at = (text: string) => Date.parse(log.find((e) => e.message.includes(text))?.time ?? "");
  assert.ok(at("release | indexed") - at("release | migrated one") >= 1500, JSON.stringify(log));
  await waitFor("v1 to serve", async () => (await herd.request(HOST)).body.startsWith("one from"));

  // herd run: stdout and stderr as they were written, the exit code as herd's.
  const run = await herd.cli([
    "run",
    "--app",
    "jobs-e2e",
    "--",
    "sh",
    "-c",
    'echo "out $GREETING"; echo oops >&2; exit 7',
  ]);
  assert.equal(run.code, 7, run.stdout + run.stderr);
  assert.match(run.stdout, /^out one$/m);
  assert.match(run.stderr, /^oops$/m);
  const ok = await herd.cli(["run", "--app", "jobs-e2e", "--", "id -u; pwd"]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  if (process.getuid?.() === 0)
    assert.notEqual(ok.stdout.split("\n")[0], "0", "it runs as the tenant's uid, like instances");
  // A deadline stops it: exit 124.
  const slow = await herd.cli(["run", "--app", "jobs-e2e", "--timeout", "2s", "--", "sleep 30"]);
  assert.equal(slow.code, 124, slow.stdout + slow.stderr);
  assert.match(slow.stderr, /timed out/);

  // v2's release phase fails: v2 does not roll out, v1 keeps serving.
  const v2 = await herd.cli(["deploy", appDir(`node -e "console.log('boom'); process.exit(4)"`, "two")]);
  assert.notEqual(v2.code, 0, "the deploy fails");
  const said = v2.stdout + v2.stderr;
  assert.match(said, /release phase of web .*exited with code 4/, said);
  assert.match(said, /^ {9}web release \| boom$/m, "with the last output lines");
  assert.equal(said.match(/^.*\bboom$/gm)?.length, 1, `the output once: ${said}`);
  const app = (await herd.api<{ app: { release: number } }>("GET", "/apps/jobs-e2e")).body;
  assert.equal(app.app.release, 1, "v1 still the app's release");
  for (let n = 0; n < 5; n++) assert.match((await herd.request(HOST)).body, /^one from/, "v1 keeps serving");

  // The job: runs every 2 s, each with its output and exit code; history keeps 3.
  const runs = await waitFor(
    "two finished runs of job tick",
    async () => {
      const items = (await herd.api<{ items: Run[] }>("GET", "/apps/jobs-e2e/runs?job=tick")).body.items;
      const done = items.filter((r) => r.state === "failed" && r.exitCode === 3);
      return done.length >= 2 ? items : undefined;
    },
    60_000,
  );
  assert.ok(
    runs.every((r) => r.kind === "job" && r.scheduledAt),
    "scheduled runs",
  );
  assert.equal(new Set(runs.map((r) => r.scheduledAt)).size, runs.length, "one run per scheduled time");
  const list = await herd.cli(["jobs", "runs", "--app", "jobs-e2e", "--job", "tick"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /job tick\s+failed\s+3/);
  // The latest run that ended, with its output (its lines ship up to 250 ms after it ended).
  const logs = await waitFor("the job's output", async () => {
    const r = await herd.cli(["jobs", "logs", "--app", "jobs-e2e", "--job", "tick"]);
    return /^tick one$/m.test(r.stdout) ? r : undefined;
  });
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stderr, /exit 3/);
  // Finished runs beyond `history: 3` are deleted once their last lines shipped (5 s after they ended).
  await waitFor(
    "history trimmed to 3 runs that ended more than 6 s ago",
    async () => {
      const items = (await herd.api<{ items: Run[] }>("GET", "/apps/jobs-e2e/runs?job=tick")).body.items;
      const old = items.filter((r) => r.finishedAt && Date.now() - Date.parse(r.finishedAt) > 6000);
      return old.length === 3 && items.length <= 3 + 5;
    },
    30_000,
  );
  const jobs = await herd.cli(["jobs", "--app", "jobs-e2e"]);
  assert.match(jobs.stdout, /tick\s+web\s+\*\/2 \* \* \* \* \*\s+forbid/);
});

test("kill -9 of herd up: a run is adopted, not orphaned: it can be stopped, an ended one keeps its exit code; Ctrl-C of herd run stops its run", async () => {
  const first = await startHerd();
  herds.push(first);
  dataDirs.push(first.dataDir);
  const d = await first.cli(["deploy", appDir("true", "one")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const start = async (herd: Herd, command: string) => {
    const r = await herd.cli(["run", "--app", "jobs-e2e", "--detach", "--", command]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  const running = async (herd: Herd, id: string) =>
    waitFor(`${id} to run`, async () => {
      const r = (await herd.api<Run>("GET", `/apps/jobs-e2e/runs/${id}`)).body;
      return r.state === "running" && r.pid ? r : undefined;
    });
  const long = await running(first, await start(first, "sleep 60"));
  const short = await running(first, await start(first, "sleep 3; exit 5"));

  await first.kill9();
  assert.ok(alive(long.pid!), "the run outlives herd up");
  const second = await startHerd({ dataDir: first.dataDir });
  herds.push(second);

  // The ended run's code was kept by its shell: the new agent (not its parent) reports it.
  const ended = await waitFor("the short run to end", async () => {
    const r = (await second.api<Run>("GET", `/apps/jobs-e2e/runs/${short.id}`)).body;
    return r.state === "failed" || r.state === "succeeded" ? r : undefined;
  });
  assert.equal(ended.exitCode, 5, JSON.stringify(ended));
  // The long one is still known and stops when asked: no orphan.
  const stop = await second.cli(["jobs", "stop", "--app", "jobs-e2e", long.id]);
  assert.equal(stop.code, 0, stop.stderr);
  await waitFor("the long run's process to end", () => !alive(long.pid!), 20_000);
  const stopped = await waitFor("the long run to be stopped", async () => {
    const r = (await second.api<Run>("GET", `/apps/jobs-e2e/runs/${long.id}`)).body;
    return r.state === "stopped" ? r : undefined;
  });
  assert.match(stopped.message, /stopped by/);

  // Ctrl-C of `herd run` stops the run and herd exits 130.
  const child = spawn(
    process.execPath,
    [
      "--no-warnings",
      join(ROOT, "src/cli/main.ts"),
      "run",
      "--app",
      "jobs-e2e",
      "--",
      "echo started; sleep 60",
    ],
    {
      env: { ...process.env, HERD_SERVER: second.url, HERD_TOKEN: second.token },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  try {
    await waitFor("herd run to print the run's first line", () => out.includes("started"), 30_000);
    const id = /as (run-[a-z0-9]+)/.exec(out)?.[1];
    assert.ok(id, out);
    const { pid } = await running(second, id!);
    child.kill("SIGINT");
    assert.equal(await exited, 130, out);
    const r = (await second.api<Run>("GET", `/apps/jobs-e2e/runs/${id}`)).body;
    assert.equal(r.state, "stopped", JSON.stringify(r));
    assert.ok(pid && !alive(pid), "its process is gone");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});
