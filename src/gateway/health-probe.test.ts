// Active health probes through a real gateway (single process) and real upstreams.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { ProbeSpec } from "../model/manifest.ts";
import { startGateway } from "./gateway.ts";
import { markDown } from "./health-probe.ts";
import { buildRouteTable } from "./route-table.ts";
import {
  request,
  startTestControlPlane,
  startUpstream,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

const TOKEN = "probe-token";
const WEB = { app: "shop", service: "web" };
const PROBE: ProbeSpec = {
  path: "/healthz",
  intervalMs: 40,
  timeoutMs: 500,
  unhealthyAfter: 2,
  healthyAfter: 2,
};

/** An instance whose /healthz answers by `health()` and counts its probes; other paths answer its name. */
async function instance(name: string, health: () => number) {
  const counts = { probes: 0, served: 0 };
  const upstream = await startUpstream((req, res) => {
    if (req.url === "/healthz") {
      counts.probes++;
      res.statusCode = health();
      res.end();
      return;
    }
    counts.served++;
    res.end(name);
  });
  return { upstream, counts };
}

test("an instance failing its probes N times in a row gets no traffic until it passes M in a row", async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), "herd-probe-"));
  const controlPlane = await startTestControlPlane(TOKEN);
  let aStatus = 200;
  let bMode: "pass" | "fail" | "alternate" = "pass";
  let flip = 0;
  const a = await instance("a", () => aStatus);
  const b = await instance("b", () =>
    bMode === "pass" ? 200 : bMode === "fail" ? 503 : flip++ % 2 === 0 ? 503 : 200,
  );
  const gateway = await startGateway({
    server: controlPlane.url,
    token: TOKEN,
    port: 0,
    host: "127.0.0.1",
    dataDir,
    logger: silentLogger,
  });
  t.after(async () => {
    await gateway.close();
    await Promise.all([controlPlane.close(), a.upstream.close(), b.upstream.close()]);
    await rm(dataDir, { recursive: true, force: true });
  });
  const fallback = { status: 200, body: "degraded", contentType: "text/plain" };
  const service = testService("default", "shop", "web", [
    { host: "shop.test" },
    { host: "degraded.shop.test", fallback },
  ]);
  service.spec.probe = PROBE;
  controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
  controlPlane.put("service", "default/shop/web", service);
  controlPlane.put("instance", "a", testInstance("a", WEB, "local", a.upstream.port));
  controlPlane.put("instance", "b", testInstance("b", WEB, "local", b.upstream.port));
  const backend = () => gateway.table().backends.get("default/shop/web");
  await waitFor(() => backend()?.endpoints.length === 2, 3000, "both instances in the table");
  const served = async (n: number) => {
    const names: string[] = [];
    for (let i = 0; i < n; i++) names.push((await request(gateway.port, "shop.test", "/")).body);
    return names;
  };
  assert.deepEqual((await served(4)).sort(), ["a", "a", "b", "b"], "both serve while healthy");

  // Failing every other probe never makes two in a row: b stays in.
  bMode = "alternate";
  const alternateFrom = b.counts.probes;
  let sawDown = false;
  await waitFor(
    () => {
      if (backend()?.down !== 0) sawDown = true;
      return b.counts.probes >= alternateFrom + 8;
    },
    5000,
    "eight probes of b",
  );
  assert.equal(sawDown, false, "one failure at a time does not take it out");
  // Back to passing for a while, so the failures below are counted from zero.
  bMode = "pass";
  const passingFrom = b.counts.probes;
  await waitFor(() => b.counts.probes >= passingFrom + 2, 5000, "two passing probes of b");

  // b starts failing: after two failed probes in a row it gets no traffic.
  bMode = "fail";
  const failedFrom = b.counts.probes;
  await waitFor(() => backend()?.down === 1, 5000, "b to be down");
  assert.ok(b.counts.probes - failedFrom >= 2, "taken out only after two failed probes");
  const servedBefore = b.counts.served;
  assert.deepEqual(await served(6), ["a", "a", "a", "a", "a", "a"]);
  assert.equal(b.counts.served, servedBefore, "b got none of them");

  // b recovers: two passed probes in a row bring it back.
  bMode = "pass";
  const passedFrom = b.counts.probes;
  await waitFor(() => backend()?.down === 0, 5000, "b to be back");
  assert.ok(b.counts.probes - passedFrom >= 2, "readmitted only after two passed probes");
  assert.deepEqual((await served(4)).sort(), ["a", "a", "b", "b"]);

  // Every instance down: 503 naming the probes, or the route's fallback.
  bMode = "fail";
  aStatus = 500;
  await waitFor(() => backend()?.down === 2, 5000, "both down");
  const refused = await request(gateway.port, "shop.test", "/");
  assert.equal(refused.status, 503);
  assert.match(JSON.parse(refused.body).message, /every instance of shop\/web fails its health probe/);
  const degraded = await request(gateway.port, "degraded.shop.test", "/");
  assert.equal(degraded.body, "degraded");
  assert.equal(degraded.headers["x-herd-fallback"], "unavailable");

  // An instance that leaves the table is forgotten; its replacement starts in.
  controlPlane.delete("instance", "b");
  await waitFor(() => backend()?.endpoints.length === 1 && backend()?.down === 1, 3000, "b gone");
  aStatus = 200;
  await waitFor(() => backend()?.down === 0, 5000, "a back");
  assert.equal((await request(gateway.port, "shop.test", "/")).body, "a");
});

test("every way of picking an instance skips the ones down, and finds none when all are", () => {
  const service = testService("default", "shop", "web", [{ host: "shop.test" }]);
  service.spec.probe = PROBE;
  const table = buildRouteTable(
    {
      services: [service],
      instances: ["i1", "i2", "i3"].map((id, n) => testInstance(id, WEB, "local", 5001 + n)),
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const backend = table.backends.get("default/shop/web")!;
  markDown(table, new Set(["i2"]));
  assert.equal(backend.down, 1);
  const picked = new Set<string>();
  for (let i = 0; i < 60; i++) {
    picked.add(backend.next()!.instance);
    picked.add(backend.leastRequest()!.instance);
    picked.add(backend.byKey(`client-${i}`)!.instance);
    picked.add(backend.nextExcept(backend.endpoints[0])!.instance);
  }
  assert.deepEqual([...picked].sort(), ["i1", "i3"]);
  markDown(table, new Set(["i1", "i2", "i3"]));
  assert.equal(backend.next(), undefined);
  assert.equal(backend.leastRequest(), undefined);
  assert.equal(backend.byKey("x"), undefined);
  assert.equal(backend.nextExcept(backend.endpoints[0]), undefined);
  markDown(table, new Set());
  assert.equal(backend.down, 0);
  assert.ok(backend.endpoints.every((e) => !e.down));
});
