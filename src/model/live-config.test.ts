import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../common/errors.ts";
import { checkRouteBody, checkTrafficBody, normalizeRoute, patchTraffic } from "./live-config.ts";

const refused = (body: unknown): HerdError => {
  try {
    checkRouteBody(body);
  } catch (err) {
    assert.ok(err instanceof HerdError);
    return err;
  }
  throw new Error("expected a HerdError");
};

test("a route object's timeouts take durations as herd.yaml's do; the body is kept as given", () => {
  const body = {
    service: "web",
    host: "a.test",
    timeouts: { connect: "500ms", request: 30, idle: "2m" },
    aggregate: {
      timeout: "1500ms",
      parts: { a: { service: "web", path: "/a", timeout: "2s" }, b: { service: "web", path: "/b" } },
    },
  };
  const spec = checkRouteBody(body);
  assert.deepEqual(spec.timeouts, { connect: "500ms", request: 30, idle: "2m" });
  const route = normalizeRoute("shop", spec);
  assert.deepEqual(route.timeouts, { connectMs: 500, requestMs: 30_000, idleMs: 120_000 });
  assert.deepEqual(
    route.aggregate?.parts.map((p) => p.timeoutMs),
    [2000, 1500],
  );
});

test("a route object's bad timeout: 400 naming the field, what it takes and its range", () => {
  const idle = refused({ service: "web", host: "a.test", timeouts: { idle: "25h" } });
  assert.equal(
    idle.message,
    "invalid route: timeouts.idle: must be a duration like 300ms, 2s or 1m (or a number of seconds), from 10ms to 24h; got 25h",
  );
  assert.deepEqual(
    idle.details?.map((d) => d.field),
    ["timeouts.idle"],
  );
  assert.match(
    refused({ service: "web", host: "a.test", timeouts: { connect: 0 } }).message,
    /^invalid route: timeouts\.connect: must be a duration .*from 10ms to 5m; got 0$/,
  );
  assert.match(
    refused({ service: "web", host: "a.test", timeouts: { request: "soon" } }).message,
    /^invalid route: timeouts\.request: .*; got soon$/,
  );
  assert.match(
    refused({
      service: "web",
      host: "a.test",
      aggregate: { parts: { a: { service: "web", path: "/", timeout: "61s" } } },
    }).message,
    /^invalid route: aggregate\.parts\.a\.timeout: .*from 10ms to 1m; got 61s$/,
  );
});

const trafficRefused = (body: unknown): HerdError => {
  try {
    checkTrafficBody(body);
  } catch (err) {
    assert.ok(err instanceof HerdError);
    return err;
  }
  throw new Error("expected a HerdError");
};

test("a traffic override's breaker.open and outlier.ejection take durations as herd.yaml's do, stored in ms", () => {
  const body = checkTrafficBody({ breaker: { failures: 3, open: "250ms" }, outlier: { ejection: "2m" } });
  assert.deepEqual(patchTraffic(undefined, body), {
    breaker: { failures: 3, openMs: 250 },
    outlier: { failures: 5, ejectionMs: 120_000, maxShare: 0.5 },
  });
  // A number is seconds, as before.
  assert.deepEqual(
    patchTraffic(undefined, checkTrafficBody({ breaker: { open: 10 }, outlier: { ejection: 0.5 } })),
    {
      breaker: { failures: 5, openMs: 10_000 },
      outlier: { failures: 5, ejectionMs: 500, maxShare: 0.5 },
    },
  );
});

test("a traffic override's bad breaker.open or outlier.ejection: the field inside, what it takes and its range", () => {
  const open = trafficRefused({ breaker: { open: "11m" } });
  assert.equal(
    open.message,
    "invalid traffic policy: breaker.open: must be a duration like 300ms, 2s or 1m (or a number of seconds), from 100ms to 10m; got 11m",
  );
  assert.deepEqual(
    open.details?.map((d) => d.field),
    ["breaker.open"],
  );
  assert.match(
    trafficRefused({ breaker: { open: 0 } }).message,
    /^invalid traffic policy: breaker\.open: must be a duration .*from 100ms to 10m; got 0$/,
  );
  assert.match(
    trafficRefused({ outlier: { ejection: "soon" } }).message,
    /^invalid traffic policy: outlier\.ejection: must be a duration .*from 100ms to 1h; got soon$/,
  );
  assert.match(
    trafficRefused({ outlier: { ejection: 3601 } }).message,
    /^invalid traffic policy: outlier\.ejection: .*; got 3601$/,
  );
  // Neither a policy, false nor null: the union, as before.
  assert.equal(trafficRefused({ breaker: "5s" }).details?.[0].field, "breaker");
});
