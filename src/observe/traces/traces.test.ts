import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ManualClock } from "../../common/clock.ts";
import type { Span } from "./span.ts";
import { makeSpan } from "./testing.ts";
import { INLINE_MAP_SPANS, Traces } from "./traces.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-traces-map-"));
const clock = new ManualClock();
const T0 = clock.now() * 1000; // µs
const traces = new Traces(dir, clock, { query: { concurrency: 1 } });
after(async () => {
  await traces.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `n` requests gateway → web, one every 10 µs from `first` on (trace ids from `first`). */
function requests(first: number, n: number): Span[] {
  const spans: Span[] = [];
  for (let i = first; i < first + n; i++) {
    const start = T0 + i * 10;
    spans.push(makeSpan({ trace: i, id: 1, service: "gateway", name: "proxy", start, duration: 9 }));
    spans.push(makeSpan({ trace: i, id: 2, parent: 1, service: "web", start: start + 1, duration: 5 }));
  }
  return spans;
}

const edges = async () =>
  (await traces.map(T0, T0 + 1e9)).edges.map((e) => `${e.from}→${e.to} ${e.calls}`).join(", ");

test("a window of few spans has its map built in this thread: no query worker starts", async () => {
  traces.recordSpans(requests(1, 10));
  traces.store.flush();
  assert.equal(await edges(), "gateway→web 10");
  assert.deepEqual(traces.queries.counts, { done: 0, failed: 0, timedOut: 0, refused: 0 });
});

test("a busier window goes to a query worker, with the same answer", async () => {
  traces.recordSpans(requests(11, INLINE_MAP_SPANS / 2));
  traces.store.flush();
  assert.equal(await edges(), `gateway→web ${10 + INLINE_MAP_SPANS / 2}`);
  assert.equal(traces.queries.counts.done, 1);
});
