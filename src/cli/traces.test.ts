// herd traces / trace / map / top against a real herd server holding real spans.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { parseGatewayBatch } from "../observe/traces/gateway-batch.ts";
import { hexId, makeSpan } from "../observe/traces/testing.ts";
import { tracesOptionsFromFlags } from "./store-flags.ts";
import { runCli } from "./test-api.ts";
import { mapText, topText } from "./traces.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-traces-"));
const NOW = Date.now();

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger, traces: { flushMs: 0 } });
  const t = NOW * 1000 - 10e6;
  const spans = [];
  for (let i = 1; i <= 20; i++) {
    spans.push(
      makeSpan({ trace: i, id: 1, service: "gateway", name: "proxy", start: t + i, duration: 40_000 }),
      makeSpan({
        trace: i,
        id: 2,
        parent: 1,
        service: "web",
        name: "GET /users/:id",
        attributes: { "http.route": "/users/:id" },
        start: t + i + 10_000,
        duration: i * 1000,
        status: i === 20 ? "error" : "ok",
        statusCode: i === 20 ? 500 : 200,
      }),
      makeSpan({
        trace: i,
        id: 3,
        parent: 2,
        service: "web",
        kind: "client",
        name: "GET /check",
        attributes: { "peer.service": "auth" },
        start: t + i + 11_000,
        duration: 500,
      }),
      makeSpan({
        trace: i,
        id: 4,
        parent: 3,
        service: "auth",
        name: "GET /check",
        start: t + i + 11_100,
        duration: 300,
      }),
      makeSpan({
        trace: i,
        id: 5,
        parent: 4,
        service: "auth",
        kind: "client",
        name: "GET /me",
        start: t + i + 11_200,
        duration: 100,
      }),
      makeSpan({
        trace: i,
        id: 6,
        parent: 5,
        service: "web",
        name: "GET /me",
        start: t + i + 11_250,
        duration: 50,
      }),
    );
  }
  server.traces.recordSpans(spans);
  server.traces.store.flush();
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const run = (argv: string[], interrupt?: () => AbortSignal) =>
  runCli(argv, { server: server.url, token: server.adminToken, now: NOW, interrupt });

test("herd traces filters and lists newest first", async () => {
  const slow = await run(["traces", "--service", "web", "--min-duration", "15ms", "--since", "1m"]);
  assert.equal(slow.code, 0, slow.err);
  const lines = slow.out.trim().split("\n");
  assert.match(lines[0], /^TRACE\s+ROOT\s+DURATION\s+SPANS\s+ERRORS\s+SERVICES\s+STARTED$/);
  assert.equal(lines.length, 1 + 6, "traces 15..20");
  assert.match(
    lines[1],
    new RegExp(`^${hexId(20, 32)}\\s+gateway: proxy\\s+40ms\\s+6\\s+1\\s+auth,gateway,web\\s+10s ago`),
  );
  const errors = await run(["traces", "--errors", "--json"]);
  assert.deepEqual(
    JSON.parse(errors.out).items.map((t: { traceId: string }) => t.traceId),
    [hexId(20, 32)],
  );
  const bad = await run(["traces", "--min-duration", "soon"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--min-duration soon: expected a duration/);
});

test("herd traces --app and --service find the gateway's spans of requests routed there", async () => {
  // Half an hour ago (outside the other tests' windows): the gateway proxied two requests to shop/api,
  // which sends no spans of its own, and one to blog/web.
  const start = NOW * 1000 - 1800e6;
  const batch = {
    series: [
      ["shop.test/api", "default", "shop", "api"],
      ["blog.test/", "default", "blog", "web"],
    ],
    spans: [
      [hexId(101, 32), hexId(1), "", 0, "GET", 200, "upstream", start, 12_000, "shop-api-1"],
      [hexId(102, 32), hexId(2), "", 0, "POST", 201, "upstream", start + 1e6, 8000, "shop-api-1"],
      [hexId(103, 32), hexId(3), "", 1, "GET", 200, "upstream", start + 2e6, 3000, "blog-web-1"],
    ],
  };
  assert.ok(server.traces.store.recordColumns(parseGatewayBatch(batch)));
  server.traces.store.flush();
  const app = await run(["traces", "--app", "shop"]);
  assert.equal(app.code, 0, app.err);
  const lines = app.out.trim().split("\n");
  assert.equal(lines.length, 1 + 2);
  assert.match(
    lines[1],
    new RegExp(
      `^${hexId(102, 32)}\\s+gateway: POST shop.test/api\\s+8ms\\s+1\\s+-\\s+gateway,shop/api\\s+29m59s ago`,
    ),
  );
  const service = await run(["traces", "--app", "shop", "--service", "api", "--json"]);
  assert.deepEqual(
    JSON.parse(service.out).items.map((t: { traceId: string }) => t.traceId),
    [hexId(102, 32), hexId(101, 32)],
  );
  const blog = await run(["traces", "--service", "blog/web", "--json"]);
  assert.deepEqual(
    JSON.parse(blog.out).items.map((t: { traceId: string; services: string[] }) => [t.traceId, t.services]),
    [[hexId(103, 32), ["blog/web", "gateway"]]],
  );
  const top = await run(["top", "--window", "1h", "--json"]);
  const calls = Object.fromEntries(
    JSON.parse(top.out).services.map((s: { service: string; calls: number }) => [s.service, s.calls]),
  );
  assert.deepEqual([calls["shop/api"], calls["blog/web"]], [2, 1], "herd top shows the upstream services");
});

test("herd trace prints the tree with timing bars", async () => {
  const r = await run(["trace", hexId(20, 32)]);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split("\n");
  assert.equal(lines[0], `trace ${hexId(20, 32)}  40ms  6 spans  3 services  1 error`);
  assert.match(lines[1], /^gateway proxy\s+\|█{30}\| 40ms$/);
  assert.match(lines[2], /^ {2}web GET \/users\/:id\s+\| {7}█{15} {8}\| 20ms {2}500 {2}ERROR$/);
  assert.match(lines[3], /^ {4}web GET \/check → auth\s+\|/);
  assert.match(lines[4], /^ {6}auth GET \/check/);
  assert.match(lines[6], /^ {10}web GET \/me\s+\|/);
  assert.equal((await run(["trace", "xyz"])).code, 2);
  const missing = await run(["trace", hexId(999, 32)]);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /no trace/);
});

test("herd map shows each edge with rate, errors and percentiles, and marks the cycle", async () => {
  const r = await run(["map", "--window", "1m"]);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split("\n");
  assert.equal(lines.length, 4);
  assert.match(lines[0], /^auth → web\s+0\.33\/s\s+err 0%\s+p50 50µs\s+p99 50µs\s+↺ cycle$/);
  assert.match(lines[1], /^gateway → web\s+0\.33\/s\s+err 5%\s+p50 10ms\s+p99 20ms$/);
  assert.match(lines[2], /^web → auth\s+0\.33\/s\s+err 0%\s+p50 300µs\s+p99 300µs\s+↺ cycle$/);
  assert.equal(lines[3], "cycle: auth → web → auth");
  const json = JSON.parse((await run(["map", "--json"])).out);
  assert.deepEqual(json.cycles, [["auth", "web"]]);
});

test("herd top orders by calls, latency or time; --watch refreshes until interrupted", async () => {
  const calls = await run(["top", "--window", "1m"]);
  assert.equal(calls.code, 0, calls.err);
  const [title, , header, first, second] = calls.out.split("\n");
  assert.equal(title, "top by calls, last 1m");
  assert.match(header, /^SERVICE\s+CALLS\s+RATE\s+ERR\s+P50\s+P99\s+TIME$/);
  assert.match(first, /^web\s+40\s/);
  assert.match(second, /^auth\s+20\s|^gateway\s+20\s/);
  const time = JSON.parse((await run(["top", "--by", "time", "--json"])).out);
  assert.deepEqual(
    time.services.map((s: { service: string }) => s.service),
    ["gateway", "web", "auth"],
  );
  assert.equal((await run(["top", "--by", "size"])).code, 2);

  const controller = new AbortController();
  let refreshes = 0;
  const watched = run(["top", "--watch", "--interval", "200ms", "--json"], () => controller.signal);
  const timer = setInterval(() => {
    if (++refreshes >= 3) controller.abort();
  }, 250);
  const w = await watched;
  clearInterval(timer);
  assert.equal(w.code, 0);
  const frames = w.out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.ok(frames.length >= 2, `${frames.length} refreshes`);
  assert.equal(frames[0].by, "calls");
});

test("the server's trace flags are checked and read", () => {
  assert.deepEqual(
    tracesOptionsFromFlags({
      "traces-retention": "2h",
      "traces-max-size": "1Gi",
      "traces-forward": "http://collector:4318/v1/traces",
      "traces-forward-header": ["Authorization=Bearer x=y"],
    }),
    {
      maxAgeMs: 7_200_000,
      maxBytes: 1024 ** 3,
      forwardUrl: "http://collector:4318/v1/traces",
      forwardHeaders: { Authorization: "Bearer x=y" },
    },
  );
  assert.throws(() => tracesOptionsFromFlags({ "traces-retention": "5" }), /--traces-retention must be/);
  assert.throws(() => tracesOptionsFromFlags({ "traces-max-size": "lots" }), /--traces-max-size must be/);
  assert.throws(
    () => tracesOptionsFromFlags({ "traces-forward": "collector:4318" }),
    /--traces-forward must be/,
  );
  assert.throws(() => tracesOptionsFromFlags({ "traces-forward-header": ["nope"] }), /NAME=VALUE/);
});

test("map and top say when a busy window was sampled", () => {
  const map = {
    from: 0,
    to: 1,
    nodes: [],
    cycles: [],
    sampledEvery: 4,
    edges: [
      {
        from: "a",
        to: "b",
        calls: 8,
        rate: 8,
        errors: 0,
        errorRate: 0,
        p50: 1000,
        p99: 2000,
        totalTime: 8000,
        inCycle: false,
      },
    ],
  };
  assert.match(mapText(map, "15m"), /\(estimated from 1 in 4 spans of a busy window\)$/);
  assert.match(
    topText({ from: 0, to: 1, by: "calls", services: [], routes: [], sampledEvery: 2 }, "5m"),
    /^top by calls, last 5m \(estimated from 1 in 2 spans/,
  );
  assert.doesNotMatch(mapText({ ...map, sampledEvery: 1 }, "15m"), /estimated/);
});
