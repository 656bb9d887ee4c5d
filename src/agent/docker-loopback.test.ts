import assert from "node:assert/strict";
import { test } from "node:test";
import { forwardedPorts, rewriteLoopback } from "./docker-loopback.ts";

test("loopback host:port in env values point at the bridge; other hosts and names are left", () => {
  const { env, ports } = rewriteLoopback(
    {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:41234",
      HERD_CONFIG_URL: "http://localhost:41300/config?x=1",
      DATABASE_URL: "postgres://u:p@127.0.0.1:5432/db,127.0.0.1:5433",
      ROUTE: "http://app.localhost:8080/",
      OTHER: "http://10.0.0.1:9000 127.0.0.10:80",
      PORT: "20001",
    },
    "172.18.0.1",
  );
  assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, "http://172.18.0.1:41234");
  assert.equal(env.HERD_CONFIG_URL, "http://172.18.0.1:41300/config?x=1");
  assert.equal(env.DATABASE_URL, "postgres://u:p@172.18.0.1:5432/db,172.18.0.1:5433");
  assert.equal(env.ROUTE, "http://app.localhost:8080/");
  assert.equal(env.OTHER, "http://10.0.0.1:9000 127.0.0.10:80");
  assert.equal(env.PORT, "20001");
  assert.deepEqual(ports.sort(), [41234, 41300, 5432, 5433].sort());
  // After an agent restart the container's env names the same ports.
  const entries = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  assert.deepEqual(forwardedPorts(entries, "172.18.0.1").sort(), ports.sort());
});
