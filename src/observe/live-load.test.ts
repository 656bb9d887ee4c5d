import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../common/clock.ts";
import { LATENCY_BUCKETS_MS, type ServiceLoad } from "../model/load.ts";
import { LiveLoad, quantileMs, RETAIN_MS } from "./live-load.ts";

const KEY = "default/shop/web";
const BUCKETS = LATENCY_BUCKETS_MS.length + 1;

/** A histogram with `n` responses in the bucket whose upper bound is `boundMs`. */
function histogram(n: number, boundMs: number): number[] {
  const h = new Array<number>(BUCKETS).fill(0);
  const b = LATENCY_BUCKETS_MS.indexOf(boundMs as (typeof LATENCY_BUCKETS_MS)[number]);
  h[b === -1 ? BUCKETS - 1 : b] = n;
  return h;
}

function serviceLoad(over: Partial<ServiceLoad> = {}): ServiceLoad {
  return {
    service: KEY,
    requests: 10,
    errors: 0,
    shed: 0,
    inflight: 0,
    waiting: 0,
    latency: histogram(10, 50),
    instances: [],
    ...over,
  };
}

/** Reports every second for `seconds`, advancing the clock first (a report arrives at the end of its interval). */
function reportFor(load: LiveLoad, clock: ManualClock, id: string, seconds: number, s: () => ServiceLoad[]) {
  for (let i = 0; i < seconds; i++) {
    clock.advance(1000);
    load.record(id, { at: clock.now(), intervalMs: 1000, services: s() });
  }
}

test("quantileMs interpolates within the bucket and stops at the last bound", () => {
  assert.equal(quantileMs(0.5, new Array(BUCKETS).fill(0)), undefined);
  // 10 in (25, 50]: the median is half-way.
  assert.equal(quantileMs(0.5, histogram(10, 50)), 37.5);
  // 90 fast (≤5 ms), 10 in (250, 500]: p99 is 90 % into that bucket.
  const h = histogram(90, 5);
  h[LATENCY_BUCKETS_MS.indexOf(500)] = 10;
  assert.equal(quantileMs(0.99, h), 250 + 250 * 0.9);
  assert.equal(quantileMs(0.5, h), 2.5 * (50 / 45));
  // Slower than every bound: the last bound.
  assert.equal(quantileMs(0.99, histogram(5, Number.POSITIVE_INFINITY)), 10_000);
});

test("a service's rate, errors and latency sum over reporters and cover only what was reported", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  assert.equal(load.service(KEY, 10_000), undefined, "nothing reported yet");
  // Two gateways, each 10 requests a second (2 errors from gw-a) for 20 s.
  for (let i = 0; i < 20; i++) {
    clock.advance(1000);
    load.record("gw-a", { at: clock.now(), intervalMs: 1000, services: [serviceLoad({ errors: 2 })] });
    load.record("gw-b", { at: clock.now() + 777_000, intervalMs: 1000, services: [serviceLoad()] });
  }
  const f = load.service(KEY, 10_000);
  assert.ok(f);
  assert.equal(f.coveredMs, 10_000);
  assert.equal(f.requests, 200);
  assert.equal(f.errors, 20);
  assert.equal(f.rps, 20);
  assert.equal(f.errorRate, 0.1);
  assert.equal(f.p50Ms, 37.5);
  // Right after the start only what was reported counts (2 s of a 60 s window).
  const early = new LiveLoad(clock);
  reportFor(early, clock, "gw-a", 2, () => [serviceLoad()]);
  const e = early.service(KEY, 60_000);
  assert.ok(e);
  assert.equal(e.coveredMs, 2000);
  assert.equal(e.rps, 10);
});

test("seconds a gateway said nothing about count as zero; a window ends at the reporter's last report", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  reportFor(load, clock, "gw", 5, () => [serviceLoad({ requests: 100, latency: histogram(100, 10) })]);
  // 5 s of silence: the gateway had nothing to say (it skips empty reports).
  reportFor(load, clock, "gw", 5, () => []);
  const f = load.service(KEY, 10_000);
  assert.ok(f);
  assert.equal(f.requests, 500);
  assert.equal(f.rps, 50);
  // Half a second after the last report, a 1 s window still holds that whole report, not half of it.
  const busy = new LiveLoad(clock);
  reportFor(busy, clock, "gw", 3, () => [serviceLoad({ requests: 40, latency: histogram(40, 10) })]);
  clock.advance(500);
  assert.equal(busy.service(KEY, 1000)?.requests, 40);
  // Long after the last report the window ends now: nothing in it, but the service is still known.
  clock.advance(60_000);
  const quiet = busy.service(KEY, 10_000);
  assert.ok(quiet);
  assert.equal(quiet.requests, 0);
  assert.equal(quiet.p99Ms, undefined);
});

test("in flight is a mean over the window; waiting is the reporters' latest, while they report", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  // a: 4 in flight for 10 s; b: 2 for the last 5 s.
  for (let i = 0; i < 10; i++) {
    clock.advance(1000);
    load.record("a", {
      at: clock.now(),
      intervalMs: 1000,
      services: [serviceLoad({ inflight: 4, waiting: 3 })],
    });
    if (i >= 5)
      load.record("b", {
        at: clock.now(),
        intervalMs: 1000,
        services: [serviceLoad({ inflight: 2, waiting: 1 })],
      });
  }
  const f = load.service(KEY, 10_000);
  assert.ok(f);
  assert.equal(f.inflight, 5);
  assert.equal(f.waiting, 4);
  // a stops reporting; b goes on.
  reportFor(load, clock, "b", 3, () => [serviceLoad({ inflight: 2, waiting: 1 })]);
  assert.equal(load.service(KEY, 10_000)?.waiting, 1);
  // b's next report no longer names the service: nothing held any more.
  reportFor(load, clock, "b", 1, () => []);
  assert.equal(load.service(KEY, 10_000)?.waiting, 0);
});

test("instances: split per instance, summed over reporters, with the latest release", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  const report = (release: number) => [
    serviceLoad({
      requests: 30,
      errors: 10,
      latency: histogram(30, 25),
      instances: [
        { instance: "i-2", release, requests: 20, errors: 10, inflight: 1, latency: histogram(20, 250) },
        { instance: "i-1", release: 1, requests: 10, errors: 0, inflight: 0, latency: histogram(10, 25) },
      ],
    }),
  ];
  // Gateway a for 10 s; gateway b for the last 5 s. i-2 (a pet) was moved to release 2 5 s ago.
  for (let i = 0; i < 10; i++) {
    clock.advance(1000);
    load.record("a", { at: clock.now(), intervalMs: 1000, services: report(i >= 5 ? 2 : 1) });
    if (i >= 5) load.record("b", { at: clock.now(), intervalMs: 1000, services: report(2) });
  }
  const list = load.instances(KEY, 10_000);
  assert.deepEqual(
    list.map((i) => [i.instance, i.release, i.requests, i.errors, i.rps, i.errorRate]),
    [
      ["i-1", 1, 150, 0, 15, 0],
      ["i-2", 2, 300, 150, 30, 0.5],
    ],
  );
  assert.ok((list[1].p99Ms ?? 0) > 100 && (list[1].p99Ms ?? 0) <= 250);
  assert.equal(list[1].inflight, 1.5);
  assert.deepEqual(load.instances("default/shop/other", 10_000), []);
});

test("lastRequestAt is moved to the control plane's clock and outlives the reports", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  clock.advance(1000);
  // The gateway's clock is 1 h ahead; its latest request came 300 ms before its report.
  const gatewayNow = clock.now() + 3_600_000;
  load.record("gw", {
    at: gatewayNow,
    intervalMs: 1000,
    services: [serviceLoad({ lastRequestAt: gatewayNow - 300 })],
  });
  assert.equal(load.service(KEY, 60_000)?.lastRequestAt, clock.now() - 300);
  // Reports age out after RETAIN_MS; the request time stays (scale to zero asks how long a service was idle).
  const at = clock.now() - 300;
  clock.advance(RETAIN_MS + 5000);
  load.record("other", { at: clock.now(), intervalMs: 1000, services: [] });
  assert.equal(load.reporters, 1, "the silent reporter aged out");
  const f = load.service(KEY, 60_000);
  assert.ok(f);
  assert.equal(f.requests, 0);
  assert.equal(f.lastRequestAt, at);
});

test("memory is bounded: reports past RETAIN_MS are dropped, the ring wraps, instances stay aligned", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  const inst = (instance: string) => ({
    instance,
    release: 1,
    requests: 2,
    errors: 1,
    inflight: 0,
    latency: histogram(2, 5),
  });
  let n = 0;
  // 20 minutes: "early" only in the first 100 reports, "late" only in the last 300, "all" in every one.
  reportFor(load, clock, "gw", (2 * RETAIN_MS) / 1000, () => {
    n++;
    const instances = [inst("all")];
    if (n <= 100) instances.push(inst("early"));
    if (n > 900) instances.push(inst("late"));
    return [serviceLoad({ instances })];
  });
  // The retained 600 s of reports (and at most a second more between prunes), not the 1200 sent.
  const { entries, bytes } = load.held();
  assert.ok(entries >= RETAIN_MS / 1000 && entries <= RETAIN_MS / 1000 + 1, String(entries));
  // 640 slots of a service (84 bytes) and of two instances (60 bytes each).
  assert.ok(bytes <= 640 * (84 + 2 * 60), String(bytes));
  assert.equal(load.service(KEY, RETAIN_MS)?.requests, 6000);
  assert.deepEqual(
    load.instances(KEY, RETAIN_MS).map((i) => [i.instance, i.requests, i.errors]),
    [
      ["all", 1200, 600],
      ["late", 600, 300],
    ],
  );
  // A short window sees only the last reports, on both instances.
  assert.deepEqual(
    load.instances(KEY, 10_000).map((i) => [i.instance, i.requests]),
    [
      ["all", 20],
      ["late", 20],
    ],
  );
});

test("seconds without a report after the control plane started count as no traffic: a burst after a quiet start is a rise", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  // Up and quiet for 25 s (gateways send nothing without traffic), then 5 s of 10 requests a second.
  clock.advance(25_000);
  reportFor(load, clock, "gw", 5, () => [serviceLoad()]);
  const short = load.service(KEY, 5_000)!;
  const long = load.service(KEY, 30_000)!;
  assert.equal(short.rps, 10);
  assert.equal(long.coveredMs, 30_000);
  assert.ok(Math.abs(long.rps - 50 / 30) < 1e-9, `rps over 30 s ${long.rps}`);
});

test("figures per release sum the instances of each release over reporters", () => {
  const clock = new ManualClock();
  const load = new LiveLoad(clock);
  const instance = (id: string, release: number, requests: number, errors: number, boundMs: number) => ({
    instance: id,
    release,
    requests,
    errors,
    inflight: 0,
    latency: histogram(requests, boundMs),
  });
  for (const gw of ["gw-a", "gw-b"]) {
    reportFor(load, clock, gw, 10, () => [
      serviceLoad({
        requests: 30,
        errors: 1,
        instances: [
          instance("old-1", 1, 10, 0, 10),
          instance("old-2", 1, 10, 0, 10),
          instance("new-1", 2, 10, 1, 100),
        ],
      }),
    ]);
  }
  const [v1, v2] = load.releases(KEY, 5_000);
  assert.equal(v1?.release, 1);
  assert.equal(v2?.release, 2);
  assert.equal(v2!.requests, v1!.requests / 2, "one new instance against two old ones");
  assert.equal(v1!.errorRate, 0);
  assert.equal(v2!.errorRate, 0.1);
  assert.ok(v1!.p99Ms! <= 10 && v2!.p99Ms! > 50, `p99 v1 ${v1!.p99Ms} v2 ${v2!.p99Ms}`);
  assert.deepEqual(load.releases("default/shop/none", 5_000), []);
});
