import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { silentLogger } from "../common/log.ts";
import { startTelemetryRelay } from "./telemetry-relay.ts";

test("the relay passes the ingest routes with the caller's token, refuses the rest, and keeps its port", async (t) => {
  const seen: string[] = [];
  const api = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization} ${body}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
  t.after(() => api.close());
  const dataDir = mkdtempSync(join(tmpdir(), "herd-relay-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const server = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  const options = { server, dataDir, logger: silentLogger };
  const relay = await startTelemetryRelay(options);

  const post = (path: string) =>
    fetch(`${relay.url}${path}`, { method: "POST", headers: { authorization: "Bearer ingest" }, body: "{}" });
  const span = await post("/api/v1/traces/otlp/v1/traces?x=1");
  assert.equal(span.status, 200);
  assert.deepEqual(await span.json(), { ok: true });
  assert.equal((await post("/api/v1/metrics/write")).status, 200);
  assert.deepEqual(seen, [
    "POST /api/v1/traces/otlp/v1/traces?x=1 Bearer ingest {}",
    "POST /api/v1/metrics/write Bearer ingest {}",
  ]);
  for (const [method, path] of [
    ["GET", "/api/v1/traces"],
    ["POST", "/api/v1/apps"],
    ["GET", "/api/v1/traces/otlp/v1/traces"],
  ]) {
    const res = await fetch(`${relay.url}${path}`, { method });
    assert.equal(res.status, 403, `${method} ${path}`);
    assert.equal(((await res.json()) as { code: string }).code, "forbidden");
  }
  assert.equal(seen.length, 2, "a refused request reached the control plane");

  // The next agent takes the same port, so adopted instances keep their endpoint.
  await relay.close();
  const again = await startTelemetryRelay(options);
  t.after(() => again.close());
  assert.equal(again.url, relay.url);
});

/** One unary gRPC call over h2c: the grpc-status and the response message. */
async function grpcCall(url: string, path: string, message: Buffer, headers: Record<string, string> = {}) {
  const { connect } = await import("node:http2");
  const session = connect(url);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const frame = Buffer.alloc(5 + message.length);
    frame[0] = headers["grpc-encoding"] ? 1 : 0;
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    stream.end(frame);
    const chunks: Buffer[] = [];
    let status = "";
    let grpcMessage = "";
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
      grpcMessage = decodeURIComponent(String(h["grpc-message"] ?? ""));
    });
    stream.on("trailers", (h) => {
      status = String(h["grpc-status"]);
      grpcMessage = decodeURIComponent(String(h["grpc-message"] ?? ""));
    });
    for await (const c of stream) chunks.push(c as Buffer);
    return { status, grpcMessage, body: Buffer.concat(chunks) };
  } finally {
    session.close();
  }
}

test("the relay's gRPC port hands each OTLP Export call to the control plane as OTLP/HTTP protobuf", async (t) => {
  const seen: string[] = [];
  const api = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      seen.push(
        `${req.method} ${req.url} ${req.headers["content-type"]} ${req.headers.authorization} ${body.toString("hex")}`,
      );
      if (req.headers.authorization !== "Bearer ingest") {
        res.writeHead(401, { "content-type": "application/json" });
        res.end('{"code":"unauthenticated","message":"who are you"}');
        return;
      }
      res.writeHead(200, { "content-type": "application/x-protobuf" });
      res.end();
    });
  });
  await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
  t.after(() => api.close());
  const dataDir = mkdtempSync(join(tmpdir(), "herd-relay-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const server = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  const relay = await startTelemetryRelay({ server, dataDir, logger: silentLogger });

  const TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
  const ok = await grpcCall(relay.grpcUrl, TRACES, Buffer.from([0x0a, 0x00]), {
    authorization: "Bearer ingest",
  });
  assert.equal(ok.status, "0");
  assert.deepEqual([...ok.body], [0, 0, 0, 0, 0], "one empty response message");
  const zipped = await grpcCall(
    relay.grpcUrl,
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    gzipSync(Buffer.from([0x0a, 0x00])),
    { authorization: "Bearer ingest", "grpc-encoding": "gzip" },
  );
  assert.equal(zipped.status, "0");
  assert.deepEqual(seen, [
    "POST /api/v1/otlp/v1/traces application/x-protobuf Bearer ingest 0a00",
    "POST /api/v1/otlp/v1/logs application/x-protobuf Bearer ingest 0a00",
  ]);
  const denied = await grpcCall(relay.grpcUrl, TRACES, Buffer.from([0x0a, 0x00]), {
    authorization: "Bearer nope",
  });
  assert.equal(denied.status, "16", "401 is UNAUTHENTICATED");
  assert.equal(denied.grpcMessage, "who are you");
  const unknown = await grpcCall(relay.grpcUrl, "/grpc.health.v1.Health/Check", Buffer.alloc(0));
  assert.equal(unknown.status, "12", "UNIMPLEMENTED");
  assert.equal(seen.length, 3, "an unknown service never reaches the control plane");

  // The next agent takes the same gRPC port too.
  await relay.close();
  const again = await startTelemetryRelay({ server, dataDir, logger: silentLogger });
  t.after(() => again.close());
  assert.equal(again.grpcUrl, relay.grpcUrl);
});
