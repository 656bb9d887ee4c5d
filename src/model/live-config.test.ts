import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../common/errors.ts";
import { checkRouteBody, normalizeRoute } from "./live-config.ts";

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
