// Traces through the real API: OTLP and Zipkin ingest round trips, gzip,
// the ingest token, 400s naming the field, 429 when the queue is full,
// the map and Top-N endpoints, and forwarding to a local OTLP receiver.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { toOtlpJson } from "../observe/traces/otlp.ts";
import { hexId, makeSpan } from "../observe/traces/testing.ts";
import { createToken } from "./auth.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
/** The default tenant's ingest token, as the agent hands it to the tenant's instances. */
let ingestToken: string;
const dir = mkdtempSync(join(tmpdir(), "herd-api-traces-"));
const forwarded: unknown[] = [];
const receiver = createServer(async (req, res) => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  forwarded.push(JSON.parse(Buffer.concat(chunks).toString()));
  res.end("{}");
});

before(async () => {
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const port = (receiver.address() as AddressInfo).port;
  server = await startServer({
    // Test receivers, targets and collectors listen on 127.0.0.1.
    allowFetch: ["127.0.0.0/8"],
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    // The test writes the queue itself (flush()), so nothing depends on timing.
    traces: { flushMs: 0, maxQueueSpans: 50, forwardUrl: `http://127.0.0.1:${port}/v1/traces` },
  });
  ingestToken = (await createToken(server.store, { name: "test", kind: "ingest", tenant: "default" })).secret;
});
after(async () => {
  await server.close();
  receiver.closeAllConnections();
  receiver.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  apiCall(server, method, path, body, { headers });

const now = () => Date.now() * 1000;
const OTLP = "/traces/otlp/v1/traces";
const ZIPKIN = "/traces/zipkin/api/v2/spans";

test("OTLP JSON in, the trace out as a tree; also forwarded", async () => {
  const t = now() - 1e6;
  const spans = [
    makeSpan({ trace: 0xabc, id: 1, service: "gateway", name: "proxy", start: t, duration: 30_000 }),
    makeSpan({
      trace: 0xabc,
      id: 2,
      parent: 1,
      service: "web",
      name: "GET /a",
      start: t + 1000,
      duration: 20_000,
      attributes: { "http.route": "/a", "http.status_code": 200 },
      statusCode: 200,
    }),
  ];
  const res = await call("POST", OTLP, toOtlpJson(spans));
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { partialSuccess: {} });
  server.traces.store.flush();
  const tree = await call("GET", `/traces/${hexId(0xabc, 32)}`);
  assert.equal(tree.status, 200);
  assert.equal(tree.body.spans, 2);
  assert.equal(tree.body.duration, 30_000);
  assert.equal(tree.body.roots[0].service, "gateway");
  assert.equal(tree.body.roots[0].children[0].name, "GET /a");
  assert.equal(tree.body.roots[0].children[0].offset, 1000);
  assert.equal(tree.body.roots[0].children[0].depth, 1);
  const found = await call("GET", "/traces?service=web&route=/a&minDuration=10ms");
  assert.deepEqual(
    found.body.items.map((i: { traceId: string }) => i.traceId),
    [hexId(0xabc, 32)],
  );
  assert.equal((await call("GET", "/traces?service=web&minDuration=25ms")).body.items.length, 0);
  const iso = (us: number) => encodeURIComponent(new Date(us / 1000).toISOString());
  const inRange = await call("GET", `/traces?service=web&from=${iso(t - 1e6)}&to=${iso(t + 1e6)}`);
  assert.equal(inRange.body.items.length, 1);
  const before = await call("GET", `/traces?service=web&from=${iso(t - 9e6)}&to=${iso(t - 1e6)}`);
  assert.equal(before.body.items.length, 0);
  assert.equal((await call("GET", "/traces?from=yesterday")).status, 400);
  assert.equal((await call("POST", "/tenants", { name: "acme" })).status, 201);
  assert.equal(
    (await call("GET", "/traces?service=web&tenant=acme")).body.items.length,
    0,
    "no spans of tenant acme",
  );
  await server.traces.forwarder?.drain();
  const names = forwarded.flatMap((f) =>
    (f as { resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[] }).resourceSpans.flatMap((r) =>
      r.scopeSpans.flatMap((s) => s.spans.map((x) => x.name)),
    ),
  );
  assert.deepEqual(names.sort(), ["GET /a", "proxy"]);
});

test("Zipkin v2 JSON in (gzip, with the ingest token), found by search", async () => {
  const t = now() - 2e6;
  const body = gzipSync(
    JSON.stringify([
      {
        traceId: "00000000000000aa",
        id: "00000000000000a1",
        name: "get /x",
        kind: "SERVER",
        timestamp: t,
        duration: 4000,
        localEndpoint: { serviceName: "zk" },
        tags: { "http.status_code": "500" },
      },
    ]),
  );
  const res = await call("POST", ZIPKIN, body, {
    authorization: `Bearer ${ingestToken}`,
    "content-encoding": "gzip",
  });
  assert.equal(res.status, 202);
  server.traces.store.flush();
  const found = await call("GET", "/traces?status=error&service=zk");
  assert.equal(found.body.items.length, 1);
  assert.equal(found.body.items[0].rootName, "get /x");
  // A 64-bit id finds the padded trace.
  assert.equal((await call("GET", "/traces/00000000000000aa")).body.spans, 1);
  // A body that is not what its content-encoding says: 400 saying so.
  const garbled = await call("POST", ZIPKIN, Buffer.from("not gzip"), {
    authorization: `Bearer ${ingestToken}`,
    "content-encoding": "gzip",
  });
  assert.equal(garbled.status, 400);
  assert.match(
    garbled.body.message,
    /^the body is not valid gzip \(content-encoding: gzip\): incorrect header check/,
  );
});

test("the ingest token sends spans and reads nothing", async () => {
  const ingest = { authorization: `Bearer ${ingestToken}` };
  assert.equal((await call("GET", "/traces", undefined, ingest)).status, 403);
  assert.equal((await call("GET", "/apps", undefined, ingest)).status, 403);
  assert.equal((await call("POST", OTLP, {}, { authorization: "Bearer nope" })).status, 401);
  assert.equal((await call("POST", OTLP, {}, ingest)).status, 200);
});

test("malformed spans are 400 naming the field, also in protobuf", async () => {
  const bad = await call("POST", OTLP, {
    resourceSpans: [
      {
        scopeSpans: [
          {
            spans: [
              { traceId: "12", spanId: hexId(1), name: "x", startTimeUnixNano: "1", endTimeUnixNano: "2" },
            ],
          },
        ],
      },
    ],
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, "invalid");
  assert.equal(bad.body.details[0].field, "resourceSpans[0].scopeSpans[0].spans[0].traceId");
  assert.match(bad.body.message, /traceId: must be 32 hex characters/);
  const zk = await call("POST", ZIPKIN, [{ traceId: hexId(1), id: hexId(2) }]);
  assert.equal(zk.status, 400);
  assert.equal(zk.body.details[0].field, "[0].timestamp");
  const notJson = await call("POST", OTLP, Buffer.from("{nope"), { "content-type": "application/json" });
  assert.equal(notJson.status, 400);
  const proto = await call("POST", OTLP, Buffer.from([0x0a, 0x05, 0x01]), {
    "content-type": "application/x-protobuf",
  });
  assert.equal(proto.status, 400);
  assert.equal(proto.body.details[0].field, "body");
  const dur = await call("GET", "/traces?minDuration=fast");
  assert.equal(dur.status, 400);
  assert.equal(dur.body.details[0].field, "querystring.minDuration");
});

test("above the queue's capacity ingest answers 429 with Retry-After, then takes spans again", async () => {
  const batch = (from: number, n: number) =>
    toOtlpJson(Array.from({ length: n }, (_, i) => makeSpan({ trace: 0x10000 + from + i, start: now() })));
  assert.equal((await call("POST", OTLP, batch(0, 40))).status, 200);
  const full = await call("POST", OTLP, batch(100, 20));
  assert.equal(full.status, 429);
  assert.ok(Number(full.headers.get("retry-after")) >= 1);
  assert.match(full.body.message, /queue is full/);
  const zk = await call(
    "POST",
    ZIPKIN,
    Array.from({ length: 20 }, (_, i) => ({ traceId: hexId(0x20000 + i), id: hexId(1), timestamp: now() })),
  );
  assert.equal(zk.status, 429);
  server.traces.store.flush();
  assert.equal((await call("POST", OTLP, batch(100, 20))).status, 200);
  server.traces.store.flush();
  const stats = await call("GET", "/traces/stats");
  assert.equal(stats.body.store.refused, 40);
  assert.equal(stats.body.forwarder.dropped, 0);
});

test("the map and Top-N endpoints read the window", async () => {
  const t = now() - 3e6;
  const spans = [];
  for (let i = 0; i < 10; i++) {
    spans.push(
      makeSpan({ trace: 0x30000 + i, id: 1, service: "front", name: "GET /", start: t, duration: 9000 }),
      makeSpan({
        trace: 0x30000 + i,
        id: 2,
        parent: 1,
        service: "back",
        name: "rpc",
        start: t + 10,
        duration: (i + 1) * 1000,
        status: i === 0 ? "error" : "ok",
      }),
    );
  }
  assert.equal((await call("POST", OTLP, toOtlpJson(spans))).status, 200);
  server.traces.store.flush();
  const map = await call("GET", "/traces/map?window=1m");
  assert.equal(map.status, 200);
  const edge = map.body.edges.find(
    (e: { from: string; to: string }) => e.from === "front" && e.to === "back",
  );
  assert.equal(edge.calls, 10);
  assert.equal(edge.errorRate, 0.1);
  assert.equal(edge.p50, 5000);
  assert.equal(edge.p99, 10_000);
  assert.deepEqual(map.body.cycles, []);
  const top = await call("GET", "/traces/top?by=latency&window=1m&limit=2");
  assert.equal(top.status, 200);
  assert.equal(top.body.by, "latency");
  assert.equal(top.body.routes.length, 2);
  const badBy = await call("GET", "/traces/top?by=size");
  assert.equal(badBy.status, 400);
  assert.equal(badBy.body.message, "invalid request: querystring.by must be one of calls, latency, time");
  const badStatus = await call("GET", "/traces?status=bad");
  assert.deepEqual(badStatus.body.details, [
    { field: "querystring.status", message: "must be one of ok, error" },
  ]);
  assert.equal((await call("GET", `/traces/${hexId(0xdead, 32)}`)).status, 404);
});

test("the gateway's span batches: 202 with a gateway's credential, read back as spans; a bad field is a 400 naming it", async () => {
  const ingest = { authorization: `Bearer ${server.adminToken}` };
  const apps = { authorization: `Bearer ${ingestToken}` };
  const traceId = `${Math.floor(Date.now() / 1000).toString(16)}${"0".repeat(23)}1`;
  const batch = {
    series: [["shop.test/", "default", "shop", "web"]],
    spans: [[traceId, hexId(7), "", 0, "GET", 200, "upstream", now(), 1200, "web-1"]],
  };
  assert.equal((await call("POST", "/traces/gateway", batch, ingest)).status, 202);
  server.traces.store.flush();
  const trace = await call("GET", `/traces/${traceId}`);
  assert.equal(trace.status, 200);
  assert.equal(trace.body.spans, 1);
  assert.deepEqual(
    [trace.body.roots[0].service, trace.body.roots[0].name, trace.body.roots[0].children.length],
    ["gateway", "GET shop.test/", 0],
  );
  const bad = await call("POST", "/traces/gateway", { ...batch, spans: [[traceId, "x"]] }, ingest);
  assert.equal(bad.status, 400);
  assert.equal(bad.body.details[0].field, "spans[0]");
  assert.match(bad.body.message, /invalid gateway spans: spans\[0\]: must be an array of 10/);
  // The apps' span token cannot post the gateway's batches (they name any tenant).
  assert.equal((await call("POST", "/traces/gateway", batch, apps)).status, 403);
});

test("ingest and query endpoints are in the OpenAPI document", async () => {
  const { body } = await call("GET", "/openapi.json");
  for (const p of [
    "/api/v1/traces",
    "/api/v1/traces/{id}",
    "/api/v1/traces/otlp/v1/traces",
    "/api/v1/traces/gateway",
    "/api/v1/traces/map",
    "/api/v1/traces/top",
  ]) {
    assert.ok(body.paths[p], `${p} is documented`);
  }
});
