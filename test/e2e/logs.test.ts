// Logs end to end with real processes: an app writing to stdout and stderr
// and JSON lines, deployed through herd up; its lines and its events in one
// SSE stream, resumed with Last-Event-ID across a dropped connection and a
// kill -9, and herd logs with filters.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { openEventStream } from "../../src/api/sse-testing.ts";
import type { Instance } from "../../src/model/objects.ts";
import type { LogEntry } from "../../src/observe/log-store.ts";
import { cleanupHerd, type Herd, startHerd } from "./harness.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-e2e-logs-"));

before(async () => {
  herd = await startHerd({ extraArgs: ["--logs-retention", "1h", "--logs-max-size", "64Mi"] });
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const stream = (headers: Record<string, string> = {}, query = "tail=200") =>
  openEventStream<LogEntry>(`${herd.url}/api/v1/apps/talker/logs?${query}`, {
    authorization: `Bearer ${herd.token}`,
    ...headers,
  });

test("an app's stdout, stderr, JSON lines and events stream over SSE, resumed without loss across a crash", async () => {
  const dir = join(work, "talker");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "herd.yaml"),
    "app: talker\nservices:\n  web:\n    command: node server.js\n    instances: 1\n    health: { path: /healthz }\n",
  );
  writeFileSync(
    join(dir, "server.js"),
    `const http = require("node:http");
http.createServer((req, res) => res.end("ok\\n")).listen(Number(process.env.PORT), () => {
  console.log("talker up " + process.env.HERD_INSTANCE);
  console.error("WARN talker stderr " + process.env.HERD_INSTANCE);
  console.log(JSON.stringify({ level: "error", msg: "json hello", trace_id: "${TRACE}", user: 7 }));
});
`,
  );
  const deploy = await herd.cli(["deploy", dir]);
  assert.equal(deploy.code, 0, deploy.stdout + deploy.stderr);

  const first = stream();
  await first.until(() => first.events.some((e) => e.data.msg === "json hello"), "the app's lines", 20_000);
  const byLine = (s: typeof first, text: string) => s.events.find((e) => e.data.line.startsWith(text))?.data;
  assert.equal(byLine(first, "talker up")?.stream, "stdout");
  const err = byLine(first, "WARN talker stderr");
  assert.equal(err?.stream, "stderr");
  assert.equal(err?.level, "warn");
  const json = first.events.find((e) => e.data.msg === "json hello")!.data;
  assert.equal(json.level, "error");
  assert.equal(json.traceId, TRACE);
  assert.deepEqual(json.fields, { level: "error", msg: "json hello", trace_id: TRACE, user: 7 });
  // The deploy's events are in the same stream, in order with the lines.
  assert.ok(first.events.some((e) => e.data.stream === "event" && e.data.reason === "DeploySucceeded"));
  const seqs = first.events.map((e) => Number(e.id));
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
  );

  // The client goes away; meanwhile the instance is killed and replaced.
  await first.close();
  const lastId = first.events.at(-1)!.id!;
  const { body } = await herd.api<{ items: Instance[] }>("GET", "/apps/talker/instances");
  const victim = body.items.find((i) => i.state === "running")!;
  process.kill(victim.pid!, "SIGKILL");

  // Its crash is an event (reason Exited). Events are recorded up to half a second after the
  // state they tell (events.ts batches them), so the replacement's first line may come before it,
  // and the victim's Healthy event may come after the first stream closed: wait for both.
  const isCrash = (e: (typeof first.events)[number]) =>
    e.data.stream === "event" && e.data.instance === victim.id && e.data.reason === "Exited";
  const second = stream({ "last-event-id": lastId });
  await second.until(
    () =>
      second.events.some(isCrash) &&
      second.events.some(
        (e) =>
          e.data.line.startsWith("talker up") && e.data.instance !== victim.id && e.data.stream === "stdout",
      ),
    "the crash event and the replacement's first line",
    30_000,
  );
  await second.close();
  const crash = second.events.find(isCrash);
  assert.ok(crash, "the crash is an event in the stream");
  assert.equal(crash.data.level, "warn");
  const all = [...first.events, ...second.events].map((e) => Number(e.id));
  assert.equal(new Set(all).size, all.length, "an entry came twice");
  assert.deepEqual(
    all,
    [...all].sort((a, b) => a - b),
  );
  // Nothing was lost: the resumed stream is exactly what a fresh read after the cursor returns.
  const later = await herd.api<{ items: LogEntry[] }>("GET", `/apps/talker/logs?after=${lastId}`);
  const resumed = second.events.map((e) => e.data.seq);
  assert.deepEqual(resumed, later.body.items.map((e) => e.seq).slice(0, resumed.length));

  // herd logs: filters, stderr marked, the JSON line for people with its trace id.
  const warn = await herd.cli(["logs", "--app", "talker", "--level", "warn", "--tail", "200"]);
  assert.equal(warn.code, 0, warn.stderr);
  assert.match(warn.stdout, new RegExp(`web\\.${victim.id} err \\| WARN talker stderr`));
  assert.match(warn.stdout, new RegExp(`ERROR json hello user=7  trace=${TRACE}`));
  assert.doesNotMatch(warn.stdout, /talker up/);
  const grep = await herd.cli(["logs", "--app", "talker", "--grep", "TALKER UP", "--stream", "stdout"]);
  assert.equal(grep.stdout.trim().split("\n").length, 2, grep.stdout);
  const events = await herd.cli(["logs", "--app", "talker", "--stream", "event", "--json"]);
  const reasons = events.stdout
    .trim()
    .split("\n")
    .map((l) => (JSON.parse(l) as LogEntry).reason);
  assert.ok(reasons.includes("DeploySucceeded"), String(reasons));
});

test("the retention flags are checked before anything starts", async () => {
  const r = await herd.cli(
    ["server", "--logs-max-size", "lots", "--port", "0", "--data", join(work, "bad")],
    {
      timeoutMs: 20_000,
    },
  );
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--logs-max-size must be a size like 256Mi/);
});
