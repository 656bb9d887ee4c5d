// Live load figures end to end (docs/load-figures.md): real traffic through
// herd up's gateway to examples/hello (two instances); the gateway reports
// each second and GET /apps/hello/load shows the rate, the split per
// instance and the p99 within seconds.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import type { InstanceFigures, ServiceFigures } from "../../src/model/load.ts";
import {
  cleanupHerd,
  type Herd,
  ROOT,
  sleep,
  startHerd,
  steadyTraffic,
  type Traffic,
  waitFor,
} from "./harness.ts";

let herd: Herd | undefined;
let traffic: Traffic | undefined;
after(async () => {
  await traffic?.stop();
  await cleanupHerd(herd);
});

interface AppLoad {
  windowMs: number;
  services: { service: string; figures: ServiceFigures | null; instances: InstanceFigures[] }[];
}

const RATE = 100;

test("traffic through the gateway shows in GET /apps/:app/load within seconds: rate, instances, p99", async () => {
  herd = await startHerd();
  const h = herd;
  const d = await h.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  const web = async (window: string) => {
    const res = await h.api<AppLoad>("GET", `/apps/hello/load?window=${window}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const s = res.body.services.find((x) => x.service === "web");
    assert.ok(s, JSON.stringify(res.body));
    return s;
  };
  // Both instances serve before the traffic starts (the figures then split between two).
  const answered = new Set<string>();
  await waitFor("answers from both instances", async () => {
    const r = await h.request("hello.localhost");
    if (r.status === 200) answered.add(r.body.split(" ")[2]);
    return answered.size === 2;
  });
  await sleep(1500);
  const quiet = await web("10s");
  const before = quiet.figures?.requests ?? 0;

  traffic = steadyTraffic(h.gatewayUrl, "hello.localhost", { rate: RATE, connections: 4, maxSeconds: 60 });
  const started = performance.now();
  // Within a couple of seconds the figures show the traffic, on both instances.
  const first = await waitFor(
    "the traffic in the figures",
    async () => {
      const s = await web("10s");
      return (
        (s.figures?.requests ?? 0) > before && s.instances.filter((i) => i.requests > 0).length === 2 && s
      );
    },
    4000,
  );
  const seenAfterMs = Math.round(performance.now() - started);
  assert.ok(first.figures);

  // After 7 s of traffic, a 5 s window matches what the clients saw in those 5 s.
  await sleep(Math.max(0, 7000 - (performance.now() - started)));
  const s = await web("5s");
  const counts = traffic.counts();
  const last5 = counts.perSecond.slice(-6, -1);
  const clientRate = last5.reduce((a, b) => a + b, 0) / last5.length;
  assert.ok(s.figures, "figures");
  const f = s.figures;
  console.log(
    `live load: seen after ${seenAfterMs} ms; gateway ${f.rps.toFixed(1)} rps vs clients ${clientRate.toFixed(1)} rps; ` +
      `p50 ${f.p50Ms?.toFixed(1)} ms p99 ${f.p99Ms?.toFixed(1)} ms; instances ${s.instances.map((i) => `${i.instance}=${i.rps.toFixed(1)}`).join(" ")}`,
  );
  assert.equal(counts.failed, 0, JSON.stringify(counts.failures));
  assert.ok(
    Math.abs(f.rps - clientRate) <= clientRate * 0.25,
    `gateway rate ${f.rps} vs the clients' ${clientRate}`,
  );
  assert.equal(f.errors, 0);
  assert.equal(f.errorRate, 0);
  assert.equal(f.coveredMs, 5000);
  assert.ok(f.p99Ms !== undefined && f.p99Ms > 0 && f.p99Ms < 1000, `p99 ${f.p99Ms}`);
  assert.ok(f.p50Ms !== undefined && f.p50Ms <= f.p99Ms, `p50 ${f.p50Ms}`);
  assert.ok(f.lastRequestAt !== undefined && Date.now() - f.lastRequestAt < 3000, `last ${f.lastRequestAt}`);
  // Round robin over two instances: each about half, and together the service's responses.
  assert.equal(s.instances.length, 2);
  const sum = s.instances.reduce((a, i) => a + i.requests, 0);
  assert.equal(sum, f.requests);
  for (const i of s.instances) {
    assert.ok(
      i.requests >= f.requests * 0.35 && i.requests <= f.requests * 0.65,
      JSON.stringify(s.instances),
    );
    assert.equal(i.release, 1);
    assert.ok(i.p99Ms !== undefined && i.p99Ms > 0);
  }

  // Traffic stops: within a couple of seconds a short window is empty, the last request time stays.
  await traffic.stop();
  traffic = undefined;
  const stoppedAt = Date.now();
  const idle = await waitFor(
    "an empty 1 s window",
    async () => {
      const x = await web("1s");
      return x.figures !== null && x.figures.requests === 0 && x.figures;
    },
    4000,
  );
  assert.ok(idle.lastRequestAt !== undefined && Math.abs(idle.lastRequestAt - stoppedAt) < 2000);
  assert.equal(idle.inflight, 0);
});
