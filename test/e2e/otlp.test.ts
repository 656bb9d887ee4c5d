// OpenTelemetry end to end: apps deployed on herd that use the standard Node
// SDK with no settings of their own (herd's OTEL_* env only) send traces,
// metrics and logs through their agent's relay, over OTLP/HTTP protobuf (herd's
// default) and over OTLP/gRPC (a service that sets only the protocol), and
// all three land as the app's: the trace, the metrics under Prometheus names
// next to herd's, the log record in its log stream.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupHerd, type Herd, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-otlp-"));

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

// The packages as this checkout has them (the app has no node_modules of its own).
const SDK = import.meta.resolve("@opentelemetry/sdk-node");
const API = import.meta.resolve("@opentelemetry/api");

const SERVER_JS = `
import { createServer } from "node:http";
const { logs, metrics, trace } = await import(${JSON.stringify(API)});
const { NodeSDK } = await import(${JSON.stringify(SDK)});
const sdk = new NodeSDK();
sdk.start();
const span = trace.getTracer("e2e").startSpan("boot");
const meter = metrics.getMeter("e2e");
meter.createCounter("e2e.boots", { unit: "{boot}" }).add(1);
meter.createHistogram("e2e.boot.duration", { unit: "ms" }).record(12);
logs.getLogger("e2e").emit({ severityNumber: 17, body: "booted with otel" });
span.end();
await sdk.shutdown();
console.log("trace " + span.spanContext().traceId);
createServer((req, res) => res.end("ok\\n")).listen(Number(process.env.PORT));
`;

async function deploy(app: string, env: string): Promise<string> {
  const dir = join(work, app);
  mkdirSync(dir);
  writeFileSync(
    join(dir, "herd.yaml"),
    `app: ${app}
services:
  web:
    command: node server.mjs
    instances: 1
    health: { path: /healthz }
${env}`,
  );
  writeFileSync(join(dir, "server.mjs"), SERVER_JS);
  const r = await herd.cli(["deploy", dir]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const line = await waitFor(`${app}'s trace id in its logs`, async () => {
    const res = await herd.api<{ items: { line: string }[] }>("GET", `/apps/${app}/logs`);
    return res.body.items.find((l) => l.line.startsWith("trace "))?.line;
  });
  return line.slice("trace ".length);
}

async function checkSignals(app: string, traceId: string): Promise<void> {
  const tree = await waitFor(`${app}'s trace`, async () => {
    const res = await herd.api<{ spans: number }>("GET", `/traces/${traceId}`);
    return res.status === 200 ? res.body : undefined;
  });
  assert.equal(tree.spans, 1);
  const query = async (q: string) =>
    (
      await herd.api<{ data: { result: { metric: Record<string, string>; value: [number, string] }[] } }>(
        "GET",
        `/prom/api/v1/query?query=${encodeURIComponent(q)}`,
      )
    ).body.data.result;
  const boots = await waitFor(`${app}'s counter`, async () => {
    const r = await query(`e2e_boots_total{app="${app}"}`);
    return r.length > 0 ? r : undefined;
  });
  assert.equal(boots[0].value[1], "1");
  assert.equal(boots[0].metric.service, "web");
  assert.equal(boots[0].metric.tenant, "default");
  const count = await query(`e2e_boot_duration_milliseconds_count{app="${app}"}`);
  assert.equal(count[0]?.value[1], "1");
  const record = await waitFor(`${app}'s log record`, async () => {
    const res = await herd.api<{ items: { line: string; level?: string }[] }>("GET", `/apps/${app}/logs`);
    return res.body.items.find((l) => l.line === "booted with otel");
  });
  assert.equal(record.level, "error");
}

test("an app with the standard OpenTelemetry SDK and no settings: OTLP/HTTP protobuf", async () => {
  const traceId = await deploy("otelproto", "");
  await checkSignals("otelproto", traceId);
});

test("the same app choosing only OTEL_EXPORTER_OTLP_PROTOCOL=grpc: OTLP/gRPC through the relay", async () => {
  const traceId = await deploy("otelgrpc", "    env: { OTEL_EXPORTER_OTLP_PROTOCOL: grpc }\n");
  await checkSignals("otelgrpc", traceId);
});
