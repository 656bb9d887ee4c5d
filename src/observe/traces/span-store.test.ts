// The span store: the bounded ingest queue, retention by age, the hard size
// limit (oldest first), and search.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statfsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { test } from "node:test";
import { ManualClock } from "../../common/clock.ts";
import { SpanStore, traceKey } from "./span-store.ts";
import { hexId, makeSpan } from "./testing.ts";
import { newTraceId } from "./trace-context.ts";

function withStore(
  options: Partial<ConstructorParameters<typeof SpanStore>[0]>,
  fn: (store: SpanStore, clock: ManualClock, dir: string) => void,
) {
  const dir = mkdtempSync(join(tmpdir(), "herd-spans-"));
  const clock = new ManualClock();
  const store = new SpanStore({ dir, clock, flushMs: 0, ...options });
  try {
    fn(store, clock, dir);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a full queue refuses whole batches until it is written", () => {
  withStore({ maxQueueSpans: 10 }, (store) => {
    const batch = (n: number, from: number) =>
      Array.from({ length: n }, (_, i) => makeSpan({ trace: from + i }));
    assert.equal(store.recordSpans(batch(8, 1)), true);
    assert.equal(store.recordSpans(batch(3, 100)), false, "8 + 3 > 10");
    assert.equal(store.recordSpans(batch(2, 200)), true);
    assert.equal(store.stats().refused, 3);
    assert.ok(store.retryAfterSeconds() >= 1);
    store.flush();
    assert.equal(store.stats().written, 10);
    assert.equal(store.recordSpans(batch(3, 100)), true);
    // An empty queue takes any batch, so a large one is not refused forever.
    store.flush();
    assert.equal(store.recordSpans(batch(50, 1000)), true);
  });
});

test("the queue is also bounded in bytes", () => {
  withStore({ maxQueueBytes: 5000 }, (store) => {
    const big = (t: number) => [makeSpan({ trace: t, attributes: { body: "x".repeat(3000) } })];
    assert.equal(store.recordSpans(big(1)), true);
    assert.equal(store.recordSpans(big(2)), false);
  });
});

test("spans older than the retention are deleted", () => {
  withStore({ maxAgeMs: 60_000 }, (store, clock) => {
    const now = clock.now() * 1000;
    store.recordSpans([makeSpan({ trace: 1, start: now - 30e6 }), makeSpan({ trace: 2, start: now - 90e6 })]);
    store.flush();
    assert.equal(store.trace(hexId(2, 32)).length, 0, "90 s old, retention 60 s");
    assert.equal(store.trace(hexId(1, 32)).length, 1);
    clock.advance(31_000);
    store.flush();
    assert.equal(store.trace(hexId(1, 32)).length, 0);
    assert.equal(store.stats().droppedByAge, 2);
  });
});

test("over the size limit the oldest spans go first and the file stops growing", () => {
  const limit = 1024 * 1024;
  withStore({ maxBytes: limit }, (store, clock, dir) => {
    const now = clock.now() * 1000;
    const attrs = { "http.route": "/a/long/route/name", note: "y".repeat(200) };
    let id = 0;
    for (let round = 0; round < 30; round++) {
      store.recordSpans(
        Array.from({ length: 500 }, () =>
          makeSpan({ trace: ++id, start: now - 1e6 + id, attributes: attrs }),
        ),
      );
      store.flush();
      assert.ok(store.stats().bytes <= limit, `round ${round}: ${store.stats().bytes} bytes stored`);
    }
    const s = store.stats();
    assert.ok(s.droppedBySize > 5000, `${s.droppedBySize} dropped`);
    assert.equal(store.trace(hexId(1, 32)).length, 0, "the first span is gone");
    assert.equal(store.trace(hexId(id, 32)).length, 1, "the last one is kept");
    // Freed pages are reused: the file ends near the limit, not at 15,000 spans' worth.
    const file = statSync(join(dir, "spans.db")).size;
    assert.ok(file <= limit * 1.6, `spans.db is ${file} bytes`);
  });
});

test("search: traces with a span matching every filter, newest first, up to the limit", () => {
  withStore({}, (store, clock) => {
    const now = clock.now() * 1000;
    store.recordSpans([
      makeSpan({ trace: 1, id: 1, service: "gateway", start: now - 5e6, duration: 200_000 }),
      makeSpan({
        trace: 1,
        id: 2,
        parent: 1,
        service: "web",
        name: "GET /a",
        attributes: { "http.route": "/a" },
        start: now - 5e6 + 10,
        duration: 150_000,
      }),
      makeSpan({
        trace: 2,
        id: 1,
        service: "web",
        name: "GET /b",
        start: now - 4e6,
        duration: 5_000,
        status: "error",
      }),
      makeSpan({
        trace: 3,
        id: 1,
        service: "web",
        name: "GET /a",
        attributes: { "http.route": "/a" },
        start: now - 3e6,
        duration: 2_000,
      }),
      makeSpan({ trace: 4, id: 1, service: "worker", start: now - 7200e6 }),
      makeSpan({ trace: 5, id: 1, service: "worker", start: now - 3e6 - 1, tenant: "acme" }),
    ]);
    store.flush();
    const ids = (q: Parameters<SpanStore["search"]>[0]) =>
      store.search(q).map((t) => Number.parseInt(t.traceId, 16));
    assert.deepEqual(ids({}), [3, 5, 2, 1], "the last hour by default, newest first");
    assert.deepEqual(ids({ tenant: "acme" }), [5]);
    assert.deepEqual(ids({ service: "web", route: "/a" }), [3, 1]);
    assert.deepEqual(ids({ status: "error" }), [2]);
    assert.deepEqual(ids({ status: "ok" }), [3, 5, 1]);
    assert.deepEqual(ids({ minDuration: 100_000 }), [1]);
    assert.deepEqual(ids({ limit: 1 }), [3]);
    assert.deepEqual(ids({ from: now - 8000e6 }), [3, 5, 2, 1, 4]);
    const [t1] = store.search({ minDuration: 100_000 });
    assert.equal(t1.rootService, "gateway");
    assert.equal(t1.spans, 2);
    assert.equal(t1.duration, 200_000);
    assert.deepEqual(t1.services, ["gateway", "web"]);
  });
});

test("the store gives way rather than eat the disk's reserve", () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-spans-"));
  const free = statfsSync(dir).bavail * statfsSync(dir).bsize;
  rmSync(dir, { recursive: true, force: true });
  // A reserve larger than the free space: nothing may be kept.
  withStore({ reserveDiskBytes: free + 1024 ** 3 }, (store, clock) => {
    store.recordSpans(
      Array.from({ length: 2000 }, (_, i) => makeSpan({ trace: i + 1, start: clock.now() * 1000 })),
    );
    store.flush();
    assert.equal(store.stats().droppedBySize, 2000);
    assert.equal(store.search({}).length, 0);
  });
});

test("a span sent twice is stored once, and counted as a duplicate", () => {
  withStore({}, (store, clock) => {
    const spans = [1, 2].map((id) => makeSpan({ traceId: newTraceId(), id, start: clock.now() * 1000 }));
    store.recordSpans(spans);
    store.flush();
    store.recordSpans([...spans, makeSpan({ traceId: spans[0]?.traceId, id: 3, start: clock.now() * 1000 })]);
    store.flush();
    assert.equal(store.trace(spans[0]?.traceId ?? "").length, 2);
    assert.deepEqual([store.stats().written, store.stats().duplicates], [3, 2]);
    // Same span id, trace ids alike in the digits the index key reads: two spans, both kept.
    const a = "0123456789a0000000000000000000ff";
    const b = "0123456789a1111111111111111111ff";
    assert.equal(traceKey(a), traceKey(b));
    store.recordSpans([a, b].map((traceId) => makeSpan({ traceId, id: 7, start: clock.now() * 1000 })));
    store.flush();
    assert.deepEqual([store.trace(a).length, store.trace(b).length], [1, 1]);
  });
});

test("a version-0 store (old trace keys, duplicates) is rekeyed and deduplicated once, and its traces are found", () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-spans-"));
  const clock = new ManualClock();
  const id = "6921a3b0123456789abcdef0123456ff";
  try {
    let store = new SpanStore({ dir, clock, flushMs: 0 });
    store.recordSpans([makeSpan({ traceId: id, start: clock.now() * 1000 })]);
    store.close();
    // As a version-0 store had it: keys of the last 13 hex digits, a plain index, a duplicate.
    const db = new DatabaseSync(join(dir, "spans.db"));
    db.exec("DROP INDEX spans_span; CREATE INDEX spans_trace ON spans (trace_key); PRAGMA user_version = 0");
    db.prepare("UPDATE spans SET trace_key = ?").run(Number.parseInt(id.slice(-13), 16));
    db.exec(
      "INSERT INTO spans SELECT NULL, trace_key, trace_id, span_id, parent_id, service, name, route, peer, kind, start, duration, error, status_code, status_message, app, tenant, attributes FROM spans",
    );
    db.close();
    store = new SpanStore({ dir, clock, flushMs: 0 });
    assert.equal(store.trace(id).length, 1);
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("trace ids herd makes key the index in time order", () => {
  const a = newTraceId();
  const later = `${(Number.parseInt(a.slice(0, 8), 16) + 1).toString(16)}${a.slice(8)}`;
  assert.ok(traceKey(later) > traceKey(a));
  assert.equal(traceKey(hexId(0xabc, 32)), 0xabc, "a zero-padded 64-bit id keys by its low digits");
});
