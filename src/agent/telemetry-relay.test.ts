import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
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
