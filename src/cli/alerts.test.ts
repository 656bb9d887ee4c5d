import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { type RecordedRequest, runCli, sendJson, startTestApi, type TestApi } from "./test-api.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");
let api: TestApi;
let respond: (req: RecordedRequest) => [number, unknown];

before(async () => {
  api = await startTestApi((req, res) => {
    const [status, body] = respond(req);
    sendJson(res, status, body);
  });
});
after(() => api.close());

async function run(argv: string[]) {
  const result = await runCli(argv, { server: api.url, token: "tok", now: NOW });
  const last = api.requests.at(-1);
  return { ...result, last, body: last?.body.length ? JSON.parse(last.body.toString()) : undefined };
}

test("herd alerts prints the active alerts", async () => {
  respond = () => [
    200,
    {
      items: [
        {
          rule: "route-error-rate",
          state: "firing",
          severity: "warning",
          labels: { alertname: "route-error-rate", severity: "warning", app: "shop", route: "/pay" },
          annotations: { summary: "route /pay fails" },
          value: 0.123456,
          since: new Date(NOW - 120_000).toISOString(),
          silencedBy: "s1",
        },
      ],
    },
  ];
  const r = await run(["alerts"]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^STATE\s+SEVERITY\s+ALERT\s+LABELS\s+VALUE\s+SINCE\s+SUMMARY/);
  assert.match(
    r.out,
    /firing \(silenced\)\s+warning\s+route-error-rate\s+app=shop,route=\/pay\s+0\.1235\s+2m ago\s+route \/pay fails/,
  );
  respond = () => [200, { items: [] }];
  assert.equal((await run(["alerts"])).out, "No active alerts.\n");
});

test("herd alerts rules set sends the rule; bad flags are usage errors", async () => {
  respond = () => [201, { name: "slow", revision: 4 }];
  const r = await run([
    "alerts",
    "rules",
    "set",
    "slow",
    "--expr",
    "x",
    "--op",
    ">",
    "--threshold",
    "0.5",
    "--for",
    "5m",
    "--severity",
    "critical",
    "--label",
    "team=pay",
    "--summary",
    "{{ $value }}",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.last?.method, "PUT");
  assert.equal(r.last?.url, "/api/v1/alerts/rules/slow");
  assert.deepEqual(r.body, {
    expr: "x",
    op: ">",
    threshold: 0.5,
    for: "5m",
    severity: "critical",
    labels: { team: "pay" },
    annotations: { summary: "{{ $value }}" },
  });
  assert.match(r.out, /Rule slow set \(revision 4\)/);
  assert.equal((await run(["alerts", "rules", "set", "slow"])).code, 2);
  assert.equal((await run(["alerts", "rules", "set", "slow", "--expr", "x", "--threshold", "lots"])).code, 2);
});

test("herd alerts silence posts matchers and an end time; receivers list their deliveries", async () => {
  respond = () => [201, { id: "abc", until: new Date(NOW + 3600_000).toISOString() }];
  let r = await run([
    "alerts",
    "silence",
    "alertname=node-lost",
    'node="n2"',
    "--for",
    "1h",
    "--comment",
    "swap",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(r.body, {
    matchers: ["alertname=node-lost", 'node="n2"'],
    until: new Date(NOW + 3600_000).toISOString(),
    comment: "swap",
  });
  assert.match(r.out, /Silence abc until/);
  assert.equal((await run(["alerts", "silence", "alertname=x"])).code, 2, "--for is required");

  respond = () => [
    200,
    {
      items: [
        {
          name: "ops",
          url: "http://hooks/x",
          delivery: {
            delivered: 3,
            failedAttempts: 2,
            dropped: 1,
            queued: 0,
            lastError: "HTTP 500 (attempt 2)",
          },
        },
      ],
    },
  ];
  r = await run(["alerts", "receivers"]);
  assert.match(r.out, /ops\s+http:\/\/hooks\/x\s+all\s+3\s+2\s+1\s+0\s+HTTP 500 \(attempt 2\)/);

  respond = () => [201, { revision: 1 }];
  r = await run([
    "alerts",
    "receivers",
    "set",
    "ops",
    "--url",
    "http://hooks/x",
    "--header",
    "Authorization: Bearer t",
    "--severity",
    "critical",
  ]);
  assert.deepEqual(r.body, {
    url: "http://hooks/x",
    headers: { Authorization: "Bearer t" },
    severities: ["critical"],
  });

  // A secret header from a file: not on the command line.
  const file = join(mkdtempSync(join(tmpdir(), "herd-header-")), "token");
  writeFileSync(file, "Bearer from-file\n", { mode: 0o600 });
  r = await run([
    "alerts",
    "receivers",
    "set",
    "ops",
    "--url",
    "http://hooks/x",
    "--header-file",
    `Authorization: ${file}`,
  ]);
  assert.deepEqual(r.body, { url: "http://hooks/x", headers: { Authorization: "Bearer from-file" } });
  rmSync(dirname(file), { recursive: true, force: true });
});
