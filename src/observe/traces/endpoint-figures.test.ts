// Per-endpoint figures per release from a real span store: the app's server
// spans joined to the gateway spans they came through (herd.instance), grouped
// by release and route, with nearest-rank p50/p99.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ManualClock } from "../../common/clock.ts";
import { SpanStore } from "./span-store.ts";
import { makeSpan } from "./testing.ts";
import { Traces } from "./traces.ts";

test("an app's spans count per release (through the gateway span's instance) and per route", () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-endpoints-"));
  const clock = new ManualClock();
  const store = new SpanStore({ dir, clock, flushMs: 0 });
  try {
    // Spans older than the retention (24 h before the clock) would be dropped as they are written.
    const t0 = clock.now() * 1000 - 60e6;
    let trace = 0;
    /** One request: the gateway's span to `instance`, the app's server span under it. */
    const request = (
      instance: string,
      route: string,
      ms: number,
      extra: { tenant?: string; error?: boolean } = {},
    ) => {
      trace++;
      return [
        makeSpan({
          trace,
          id: 1,
          service: "gateway",
          name: "shop.localhost/",
          start: t0 + trace,
          duration: ms * 1000 + 500,
          attributes: { "peer.service": "shop/web", "herd.instance": instance },
        }),
        makeSpan({
          trace,
          id: 2,
          parent: 1,
          service: "shop/web",
          name: route,
          kind: "server",
          start: t0 + trace + 100,
          duration: ms * 1000,
          status: extra.error ? "error" : "ok",
          attributes: { "http.route": route },
          app: "shop",
          tenant: extra.tenant ?? "default",
        }),
      ];
    };
    const spans = [
      // v1 on two instances, v2 on one; /search is slow on v2.
      ...Array.from({ length: 50 }, (_, n) =>
        request(n % 2 ? "shop-web-a" : "shop-web-b", "/search", 10 + (n % 10)),
      ),
      ...Array.from({ length: 20 }, (_, n) => request("shop-web-c", "/search", 100 + n, { error: n === 0 })),
      ...Array.from({ length: 20 }, () => request("shop-web-c", "/items/:id", 5)),
      // Not counted: an unknown instance, another tenant's span of the same name.
      ...request("shop-web-gone", "/search", 1),
      ...request("shop-web-a", "/search", 1, { tenant: "other" }),
    ].flat();
    // A span without the gateway as its parent (an internal call) is not counted either.
    spans.push(
      makeSpan({ trace: 9999, id: 5, service: "shop/web", kind: "server", start: t0 + 5, tenant: "default" }),
    );
    assert.equal(store.recordSpans(spans), true);
    store.flush();
    const figures = store.endpoints({
      tenant: "default",
      service: "shop/web",
      from: t0,
      to: t0 + 1e9,
      releases: { "shop-web-a": 1, "shop-web-b": 1, "shop-web-c": 2 },
    });
    const by = (release: number, route: string) =>
      figures.find((f) => f.release === release && f.route === route);
    assert.equal(figures.length, 3, JSON.stringify(figures));
    assert.deepEqual(by(1, "/search"), {
      route: "/search",
      release: 1,
      requests: 50,
      errors: 0,
      p50Ms: 14,
      p99Ms: 19,
    });
    assert.deepEqual(by(2, "/search"), {
      route: "/search",
      release: 2,
      requests: 20,
      errors: 1,
      p50Ms: 109,
      p99Ms: 119,
    });
    assert.equal(by(2, "/items/:id")?.requests, 20);
    // The window bounds what is read.
    assert.deepEqual(
      store.endpoints({ tenant: "default", service: "shop/web", from: t0 + 1e9, to: t0 + 2e9, releases: {} }),
      [],
    );
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the query runs in the traces' query worker, as the rollout controller asks for it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-endpoints-worker-"));
  const clock = new ManualClock();
  const traces = new Traces(dir, clock, { flushMs: 0 });
  try {
    const t0 = clock.now() * 1000 - 60e6;
    traces.recordSpans([
      makeSpan({
        trace: 1,
        id: 1,
        service: "gateway",
        start: t0,
        attributes: { "peer.service": "shop/web", "herd.instance": "shop-web-a" },
      }),
      makeSpan({
        trace: 1,
        id: 2,
        parent: 1,
        service: "shop/web",
        start: t0 + 1,
        duration: 7000,
        tenant: "default",
      }),
    ]);
    traces.store.flush();
    const query = {
      tenant: "default",
      service: "shop/web",
      from: t0 - 1,
      to: t0 + 1e6,
      releases: { "shop-web-a": 3 },
    };
    const figures = JSON.parse(await traces.queries.run({ kind: "endpoints", query }, "default"));
    assert.deepEqual(figures, [{ route: "GET /", release: 3, requests: 1, errors: 0, p50Ms: 7, p99Ms: 7 }]);
  } finally {
    await traces.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
