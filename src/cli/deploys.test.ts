// herd deploys against a test API: the history table (who, state, duration,
// a failed deploy's reason), --limit, and `show ID` printing the log.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runCli, sendJson, startTestApi, type TestApi } from "./test-api.ts";

const NOW = Date.parse("2026-01-10T00:00:00Z");
const items = [
  {
    id: "d3",
    tenant: "default",
    app: "shop",
    state: "failed",
    createdAt: "2026-01-09T23:59:00Z",
    finishedAt: "2026-01-09T23:59:12.400Z",
    durationMs: 12_400,
    message: "build failed: npm ci exited with 1\nmore",
    createdBy: "user carol",
    log: true,
  },
  {
    id: "d2",
    tenant: "default",
    app: "shop",
    state: "succeeded",
    createdAt: "2026-01-09T23:00:00Z",
    finishedAt: "2026-01-09T23:01:15Z",
    durationMs: 75_000,
    release: 2,
    rollback: true,
    message: "rolled out",
    createdBy: "user admin",
    log: true,
  },
  {
    id: "d1",
    tenant: "default",
    app: "shop",
    state: "succeeded",
    createdAt: "2026-01-01T00:00:00Z",
    release: 1,
    message: "rolled out",
    log: false,
  },
];

let api: TestApi;
before(async () => {
  api = await startTestApi((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/api/v1/apps/shop/deploys")
      return sendJson(res, 200, { items, total: 3, logsKept: 20 });
    if (url.pathname === "/api/v1/apps/shop/deploys/d3") return sendJson(res, 200, items[0]);
    if (url.pathname === "/api/v1/apps/shop/deploys/d3/log") {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(
        [
          { time: "t", type: "build", message: "-----> Installing dependencies" },
          { time: "t", type: "build", message: "npm ERR! missing script" },
          { time: "t", type: "done", message: "build failed: npm ci exited with 1", state: "failed" },
        ]
          .map((e) => `${JSON.stringify(e)}\n`)
          .join(""),
      );
      return;
    }
    sendJson(res, 404, { code: "not_found", message: "no such deploy" });
  });
});
after(() => api.close());
const cli = (...argv: string[]) => runCli(argv, { server: api.url, token: "t", now: NOW });

test("herd deploys: newest first with state, release, who, when, how long, why it failed", async () => {
  const r = await cli("deploys", "--app", "shop", "--limit", "3");
  assert.equal(r.code, 0, r.err);
  assert.equal(api.requests.at(-1)?.url, "/api/v1/apps/shop/deploys?limit=3");
  const lines = r.out.trimEnd().split("\n");
  assert.match(lines[0], /^ID +STATE +RELEASE +BY +STARTED +TOOK +ERROR$/);
  assert.match(lines[1], /^d3 +failed +- +user carol +\S+ ago +12\.4s +build failed: npm ci exited with 1$/);
  assert.match(lines[2], /^d2 +succeeded \(rollback\) +v2 +user admin +\S+ ago +1m15s *$/);
  assert.match(lines[3], /^d1 +succeeded +v1 +- +9d ago +- *$/);
  assert.equal((await cli("deploys", "--app", "shop", "--limit", "0")).code, 2);
});

test("herd deploys show ID: the build output and the outcome", async () => {
  const r = await cli("deploys", "show", "d3", "--app", "shop");
  assert.equal(r.code, 0, r.err);
  assert.equal(
    r.out,
    "-----> Installing dependencies\n       npm ERR! missing script\n-----> build failed: npm ci exited with 1\n",
  );
  const json = await runCli(["--json", "deploys", "show", "d3", "--app", "shop"], {
    server: api.url,
    token: "t",
  });
  assert.equal(JSON.parse(json.out).log.length, 3);
  const missing = await cli("deploys", "show", "nope", "--app", "shop");
  assert.notEqual(missing.code, 0);
  assert.match(missing.err, /no such deploy/);
});
