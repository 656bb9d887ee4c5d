// Admission by criticality through a real proxy, real sockets and a real
// upstream: while the event loop is saturated, a critical service is served
// at once, a normal one waits for a slot, and a low one that waited too long
// is shed.

import assert from "node:assert/strict";
import type http from "node:http";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Service } from "../model/objects.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService, waitFor } from "./testing.ts";

test("saturated: critical goes on at once, normal waits for a slot, low waiting too long is shed", async (t) => {
  const held: http.ServerResponse[] = [];
  const up = await startUpstream((req, res) => {
    if (req.url === "/hold") held.push(res);
    else res.end("ok");
  });
  const proxy = new GatewayProxy({
    logger: silentLogger,
    admission: { targetDelayMs: 5, minLimit: 2, maxWaitMs: [400, 10_000] },
  });
  // The saturation: every turn of the event loop takes 20 ms more (a process that cannot keep up).
  let spinning = true;
  const spin = () => {
    const end = performance.now() + 20;
    while (performance.now() < end);
    if (spinning) setImmediate(spin);
  };
  setImmediate(spin);
  t.after(async () => {
    spinning = false;
    for (const r of held) r.end("released");
    await proxy.close();
    await up.close();
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const svc = (name: string, criticality: Service["spec"]["criticality"]): Service => {
    const s = testService("default", "shop", name, [{ host: `${name}.test` }]);
    s.spec.criticality = criticality;
    return s;
  };
  proxy.table = buildRouteTable(
    {
      services: [svc("batch", "low"), svc("web", "normal"), svc("checkout", "critical")],
      instances: ["batch", "web", "checkout"].map((s) =>
        testInstance(s, { app: "shop", service: s }, "local", up.port),
      ),
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const gate = (proxy.admission as NonNullable<typeof proxy.admission>).gate;

  // Two normal requests in flight, held by the upstream; the cap comes down to them.
  const first = [request(port, "web.test", "/hold"), request(port, "web.test", "/hold")];
  await waitFor(() => held.length === 2, 5000, "2 held requests");
  await waitFor(() => gate.limit === 2, 5000, "the cap at its floor of 2");
  // Critical traffic is flowing, so the classes below it give way (alone, they would not).
  assert.equal((await request(port, "checkout.test", "/")).status, 200);

  let normalDone = false;
  const normal = request(port, "web.test", "/").then((r) => {
    normalDone = true;
    return r;
  });
  const low = request(port, "batch.test", "/");
  await waitFor(() => gate.waiting === 2, 5000, "normal and low waiting");
  const critical = await request(port, "checkout.test", "/");
  assert.equal(critical.status, 200, "critical is served while the others wait");
  assert.equal(normalDone, false, "normal still waits for a slot");

  // Low waits at most 400 ms: then 503 with Retry-After. Normal waits on.
  const shed = await low;
  assert.equal(shed.status, 503);
  assert.equal(JSON.parse(shed.body).code, "overloaded");
  assert.equal(shed.headers["retry-after"], "1");
  assert.equal(normalDone, false);

  // A slot frees: the waiting normal request goes on.
  held.shift()?.end("released");
  assert.equal((await normal).status, 200);
  for (const r of held.splice(0)) r.end("released");
  await Promise.all(first);
  assert.ok(gate.counts.queued >= 2 && gate.counts.shed >= 1);
});
