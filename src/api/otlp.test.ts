// OTLP ingest through the real API, sent by the real OpenTelemetry Node SDK
// (a child process configured by OTEL_* env only) over http/protobuf,
// http/json and grpc: spans in the trace store, metrics queryable with
// Prometheus names, log records in the log stream. Also the 400s.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { createToken } from "./auth.ts";
import { apiCall } from "./testing.ts";

const run = promisify(execFile);
const APP = new URL("../observe/otlp/sdk-app.testapp.js", import.meta.url).pathname;

let server: RunningServer;
let ingestToken: string;
const dir = mkdtempSync(join(tmpdir(), "herd-api-otlp-"));

before(async () => {
  server = await startServer({
    dataDir: dir,
    port: 0,
    grpcPort: 0,
    logger: silentLogger,
    traces: { flushMs: 0 },
  });
  ingestToken = (await createToken(server.store, { name: "test", kind: "ingest", tenant: "default" })).secret;
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the SDK app with only the OTEL_* settings herd gives an instance; returns its trace id. */
async function runApp(protocol: string, endpoint: string, app: string): Promise<string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("OTEL_") && v !== undefined) env[k] = v;
  const { stdout } = await run(process.execPath, [APP], {
    env: {
      ...env,
      OTEL_SERVICE_NAME: `${app}/web`,
      OTEL_RESOURCE_ATTRIBUTES: `herd.tenant=default,herd.app=${app},herd.service=web,herd.instance=${app}-1`,
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      OTEL_EXPORTER_OTLP_HEADERS: `authorization=${encodeURIComponent(`Bearer ${ingestToken}`)}`,
      OTEL_LOG_LEVEL: "error",
    },
    timeout: 30_000,
  });
  return stdout.trim();
}

const promQuery = async (q: string) => {
  const res = await apiCall(server, "GET", `/prom/api/v1/query?query=${encodeURIComponent(q)}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data.result as { metric: Record<string, string>; value: [number, string] }[];
};

async function checkAllSignals(app: string, traceId: string): Promise<void> {
  assert.match(traceId, /^[0-9a-f]{32}$/);
  server.traces.store.flush();
  const trace = await apiCall(server, "GET", `/traces/${traceId}`);
  assert.equal(trace.status, 200, JSON.stringify(trace.body));
  assert.equal(JSON.stringify(trace.body).includes("checkout"), true);
  assert.equal(JSON.stringify(trace.body).includes(`${app}/web`), true);

  const orders = await promQuery(`shop_orders_total{app="${app}"}`);
  assert.equal(orders.length, 1);
  assert.equal(orders[0].value[1], "3");
  assert.equal(orders[0].metric.payment_method, "card");
  assert.equal(orders[0].metric.job, `${app}/web`);
  assert.equal(orders[0].metric.service, "web");
  assert.equal(orders[0].metric.instance, `${app}-1`);
  assert.equal(orders[0].metric.tenant, "default");
  const count = await promQuery(`shop_checkout_duration_seconds_count{app="${app}"}`);
  assert.equal(count[0]?.value[1], "1");
  const inf = await promQuery(`shop_checkout_duration_seconds_bucket{app="${app}",le="+Inf"}`);
  assert.equal(inf[0]?.value[1], "1");
  // The SDK's default bounds are 0, 5, 10, …: 0.25 s is in (0, 5], and every later bucket counts it too.
  const zero = await promQuery(`shop_checkout_duration_seconds_bucket{app="${app}",le="0"}`);
  assert.equal(zero[0]?.value[1], "0");
  const five = await promQuery(`shop_checkout_duration_seconds_bucket{app="${app}",le="5"}`);
  assert.equal(five[0]?.value[1], "1", "buckets are cumulative");
  const ten = await promQuery(`shop_checkout_duration_seconds_bucket{app="${app}",le="10"}`);
  assert.equal(ten[0]?.value[1], "1", "buckets are cumulative");
  const gauge = await promQuery(`shop_queue_size{app="${app}"}`);
  assert.equal(gauge[0]?.value[1], "7", "an up-down counter is a gauge, no _total");

  let lines: { line: string; level?: string; traceId?: string; stream: string }[] = [];
  for (let i = 0; i < 50 && lines.length === 0; i++) {
    lines = (await apiCall(server, "GET", `/logs?app=${app}`)).body.items;
    if (lines.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(lines.length, 1);
  assert.equal(lines[0].level, "warn");
  assert.equal(JSON.parse(lines[0].line).msg, "stock low");
  assert.equal(JSON.parse(lines[0].line).sku, "a-1");
}

test("the OpenTelemetry SDK with http/protobuf: traces, metrics and logs land", async () => {
  const traceId = await runApp("http/protobuf", `${server.url}/api/v1/otlp`, "shop-proto");
  await checkAllSignals("shop-proto", traceId);
});

test("the OpenTelemetry SDK with http/json: the same", async () => {
  const traceId = await runApp("http/json", `${server.url}/api/v1/otlp`, "shop-json");
  await checkAllSignals("shop-json", traceId);
});

test("the OpenTelemetry SDK with grpc: the same, on the gRPC port", async () => {
  assert.ok(server.grpcUrl);
  const traceId = await runApp("grpc", server.grpcUrl, "shop-grpc");
  await checkAllSignals("shop-grpc", traceId);
});

test("bad protobuf and bad fields are 400s naming the field", async () => {
  const proto = (signal: string, body: Buffer) =>
    apiCall(server, "POST", `/otlp/v1/${signal}`, body, {
      token: ingestToken,
      headers: { "content-type": "application/x-protobuf" },
    });
  for (const signal of ["traces", "metrics", "logs"]) {
    const res = await proto(signal, Buffer.from([0x0a, 0x05, 0x01]));
    assert.equal(res.status, 400, signal);
    assert.equal(res.body.details[0].field, "body");
  }
  const badMetric = await apiCall(
    server,
    "POST",
    "/otlp/v1/metrics",
    { resourceMetrics: [{ scopeMetrics: [{ metrics: [{ name: "x", gauge: { dataPoints: [{}] } }] }] }] },
    { token: ingestToken },
  );
  assert.equal(badMetric.status, 400);
  assert.equal(
    badMetric.body.details[0].field,
    "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]",
  );
  const delta = await apiCall(
    server,
    "POST",
    "/otlp/v1/metrics",
    {
      resourceMetrics: [
        {
          scopeMetrics: [
            {
              metrics: [
                {
                  name: "d",
                  sum: { isMonotonic: true, aggregationTemporality: 1, dataPoints: [{ asInt: "1" }] },
                },
              ],
            },
          ],
        },
      ],
    },
    { token: ingestToken },
  );
  assert.equal(delta.status, 200);
  assert.equal(delta.body.partialSuccess.rejectedDataPoints, 1);
  assert.match(delta.body.partialSuccess.errorMessage, /delta/);
});

test("gRPC calls pass the API's authentication: a bad token is UNAUTHENTICATED, bad bytes INVALID_ARGUMENT", async () => {
  const { connect } = await import("node:http2");
  const session = connect(server.grpcUrl as string);
  try {
    const call = (token: string, message: Buffer) =>
      new Promise<{ status: string; message: string }>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
          "content-type": "application/grpc",
          te: "trailers",
          authorization: `Bearer ${token}`,
        });
        const frame = Buffer.alloc(5);
        frame.writeUInt32BE(message.length, 1);
        let head: Record<string, unknown> = {};
        stream.on("response", (h) => {
          head = h;
        });
        stream.on("trailers", (h) => {
          head = h;
        });
        stream.on("error", reject);
        stream.on("end", () =>
          resolve({
            status: String(head["grpc-status"]),
            message: decodeURIComponent(String(head["grpc-message"] ?? "")),
          }),
        );
        stream.resume();
        stream.end(Buffer.concat([frame, message]));
      });
    const denied = await call("herd_pat_nope", Buffer.from([0x0a, 0x00]));
    assert.equal(denied.status, "16");
    const bad = await call(ingestToken, Buffer.from([0x0a, 0x05, 0x01]));
    assert.equal(bad.status, "3");
    assert.match(bad.message, /not an OTLP protobuf ExportMetricsServiceRequest/);
    assert.equal((await call(ingestToken, Buffer.from([0x0a, 0x00]))).status, "0");
  } finally {
    session.close();
  }
});
