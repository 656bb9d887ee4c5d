// herd alerts and herd metrics against a real herd server: points pushed into
// its TSDB, rules evaluated by its evaluator, silences and receivers stored.
// (alerts.test.ts and metrics.test.ts check the CLI's formatting with canned
// replies; this checks it speaks the server's real API.)

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall } from "../api/testing.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-alerts-metrics-"));
// Whole seconds, so the CLI's query times and the pushed samples line up exactly.
const NOW = Math.floor(Date.now() / 1000) * 1000;

before(async () => {
  server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    // Evaluation is driven by the test (server.alerts.evaluate()), not the timer.
    alerts: { intervalMs: 3_600_000 },
    metrics: { scrapeIntervalMs: 3_600_000 },
  });
  const w = await apiCall(server, "POST", "/metrics/write", {
    series: [
      {
        metric: "queue_depth",
        labels: { queue: "mail" },
        samples: [
          [NOW - 60_000, 400],
          [NOW - 30_000, 450],
          [NOW, 500],
        ],
      },
      {
        metric: "queue_depth",
        labels: { queue: "sms" },
        samples: [
          [NOW - 60_000, 3],
          [NOW - 30_000, 4],
          [NOW, 5],
        ],
      },
    ],
  });
  assert.equal(w.status, 200, JSON.stringify(w.body));
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const run = (argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken, now: NOW });

/** The server's ingest queue writes on a later turn: asks again until `ready` holds. */
async function until<T>(ask: () => Promise<T>, ready: (r: T) => boolean): Promise<T> {
  let r = await ask();
  for (let i = 0; i < 100 && !ready(r); i++) {
    await new Promise((res) => setTimeout(res, 20));
    r = await ask();
  }
  return r;
}

test("herd metrics: an instant and a range query answered by the server's TSDB; a bad query shows its message", async () => {
  let r = await until(
    () => run(["metrics", "queue_depth"]),
    (x) => /sms/.test(x.out),
  );
  assert.equal(r.code, 0, r.err);
  assert.equal(
    r.out,
    'SERIES                      VALUE\nqueue_depth{queue="mail"}   500\nqueue_depth{queue="sms"}    5\n',
  );
  r = await run(["metrics", "sum(queue_depth)"]);
  assert.equal(r.out, "SERIES   VALUE\n{}       505\n");
  r = await run(["metrics", "queue_depth", "--range", "1m", "--step", "30s"]);
  assert.equal(r.code, 0, r.err);
  const rows = r.out.trim().split("\n");
  assert.match(rows[0], /^TIME\s+\{queue="mail"\}\s+\{queue="sms"\}$/);
  assert.deepEqual(
    rows.slice(1).map((l) => l.split(/\s+/).slice(1)),
    [
      ["400", "3"],
      ["450", "4"],
      ["500", "5"],
    ],
    "the three pushed points of each series, a step apart",
  );
  r = await run(["metrics", "sum(queue_depth"]);
  assert.equal(r.code, 1);
  assert.match(r.err, /^herd: parse error at position 16: expected "," or "\)", found end of input/);
});

test("herd alerts: a rule set through the CLI fires on the server, shows silenced, and receivers list", async () => {
  let r = await run([
    "alerts",
    "rules",
    "set",
    "deep-queue",
    "--expr",
    "queue_depth",
    "--op",
    ">",
    "--threshold",
    "100",
    "--severity",
    "critical",
    "--summary",
    "queue {{ $labels.queue }} holds {{ $value }}",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^Rule deep-queue set \(revision \d+\)/);
  const rule = await apiCall(server, "GET", "/alerts/rules/deep-queue");
  assert.equal(rule.body.threshold, 100);
  assert.equal(rule.body.severity, "critical");

  const firing = async () => {
    await server.alerts.evaluate();
    return run(["alerts"]);
  };
  r = await until(firing, (x) => /deep-queue/.test(x.out));
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split("\n");
  assert.equal(lines.length, 2, r.out);
  assert.match(
    lines[1],
    /^firing\s+critical\s+deep-queue\s+queue=mail\s+500\s+\d+s ago\s+queue mail holds 500$/,
  );
  r = await run(["alerts", "rules"]);
  assert.match(r.out, /^deep-queue\s+api\s+critical\s+0s\s+queue_depth > 100\s+1\s*$/m);

  r = await run([
    "alerts",
    "silence",
    "alertname=deep-queue",
    "queue=mail",
    "--for",
    "1h",
    "--comment",
    "draining",
  ]);
  assert.equal(r.code, 0, r.err);
  const id = /^Silence (\S+) until/.exec(r.out)?.[1];
  assert.ok(id, r.out);
  await server.alerts.evaluate();
  r = await run(["alerts"]);
  assert.match(r.out, /^firing \(silenced\)\s+critical\s+deep-queue\s+queue=mail/m);
  r = await run(["alerts", "silences"]);
  assert.match(
    r.out,
    new RegExp(`^${id}\\s+active\\s+alertname="deep-queue",queue="mail"\\s+\\S+\\s+draining$`, "m"),
  );
  r = await run(["alerts", "unsilence", id]);
  assert.equal(r.code, 0, r.err);
  await server.alerts.evaluate();
  r = await run(["alerts"]);
  assert.match(r.out, /^firing\s+critical\s+deep-queue/m);

  r = await run([
    "alerts",
    "receivers",
    "set",
    "ops",
    "--url",
    "http://127.0.0.1:9/hook",
    "--severity",
    "critical",
  ]);
  assert.equal(r.code, 0, r.err);
  r = await run(["alerts", "receivers"]);
  assert.match(r.out, /^ops\s+http:\/\/127\.0\.0\.1:9\/hook\s+critical\s+0\s+0\s+0\s+0\s*$/m);

  r = await run(["alerts", "rules", "delete", "deep-queue"]);
  assert.equal(r.code, 0, r.err);
  assert.equal((await apiCall(server, "GET", "/alerts/rules/deep-queue")).status, 404);
  await server.alerts.evaluate();
  assert.equal((await run(["alerts"])).out, "No active alerts.\n");
});
