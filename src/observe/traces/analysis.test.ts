// The dependency map (edges, rates, percentiles, cycles), Top-N and the trace
// tree, fed through a real span store so the parent join is exercised too.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ManualClock } from "../../common/clock.ts";
import { DependencyMapBuilder, findCycles, Samples, TopBuilder, traceTree } from "./analysis.ts";
import type { Span } from "./span.ts";
import { SpanStore } from "./span-store.ts";
import { makeSpan } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-traces-analysis-"));
const clock = new ManualClock();
const T0 = clock.now() * 1000; // µs
const WINDOW = 10e6; // 10 s
let store: SpanStore;

/**
 * 100 requests in 10 s: gateway → web (web takes 1..100 ms, 5 fail); web
 * calls db (a client span with peer.service, no db spans) on even requests,
 * and auth (a client span whose child is auth's server span) on every tenth;
 * auth calls back into web on those (a cycle web ↔ auth).
 */
function scenario(): Span[] {
  const spans: Span[] = [];
  for (let i = 1; i <= 100; i++) {
    const start = T0 + i * 50_000;
    const ms = i * 1000;
    spans.push(makeSpan({ trace: i, id: 1, service: "gateway", name: "proxy", start, duration: ms + 500 }));
    spans.push(
      makeSpan({
        trace: i,
        id: 2,
        parent: 1,
        service: "web",
        name: "GET /users/:id",
        attributes: { "http.route": "/users/:id" },
        start: start + 100,
        duration: ms,
        status: i % 20 === 0 ? "error" : "ok",
      }),
    );
    if (i % 2 === 0) {
      spans.push(
        makeSpan({
          trace: i,
          id: 3,
          parent: 2,
          service: "web",
          kind: "client",
          name: "SELECT",
          attributes: { "peer.service": "db" },
          start: start + 200,
          duration: 300,
        }),
      );
    }
    if (i % 10 === 0) {
      spans.push(
        makeSpan({
          trace: i,
          id: 4,
          parent: 2,
          service: "web",
          kind: "client",
          name: "POST /check",
          attributes: { "peer.service": "auth" },
          start: start + 300,
          duration: 900,
        }),
        makeSpan({
          trace: i,
          id: 5,
          parent: 4,
          service: "auth",
          name: "POST /check",
          start: start + 350,
          duration: 800,
        }),
        makeSpan({
          trace: i,
          id: 6,
          parent: 5,
          service: "auth",
          kind: "client",
          name: "GET /profile",
          start: start + 400,
          duration: 200,
        }),
        makeSpan({
          trace: i,
          id: 7,
          parent: 6,
          service: "web",
          name: "GET /profile",
          start: start + 450,
          duration: 100,
        }),
      );
    }
  }
  // Outside the window: must not count.
  spans.push(makeSpan({ trace: 999, id: 1, service: "gateway", start: T0 - 1, duration: 5 }));
  return spans;
}

before(() => {
  store = new SpanStore({ dir, clock, flushMs: 0 });
  store.recordSpans(scenario());
  store.flush();
});
after(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the dependency map has one edge per calling pair with rate, error rate and p50/p99", () => {
  const b = new DependencyMapBuilder();
  assert.deepEqual(
    store.scan(T0, T0 + WINDOW, (r) => b.add(r), { parents: true }),
    { spans: 290, sampledEvery: 1 },
  );
  const map = b.result(T0, T0 + WINDOW);
  const edge = (from: string, to: string) => map.edges.find((e) => e.from === from && e.to === to);
  assert.deepEqual(
    map.edges.map((e) => `${e.from}→${e.to}`),
    ["auth→web", "gateway→web", "web→auth", "web→db"],
  );
  const gw = edge("gateway", "web");
  assert.equal(gw?.calls, 100);
  assert.equal(gw?.rate, 10);
  assert.equal(gw?.errors, 5);
  assert.equal(gw?.errorRate, 0.05);
  assert.equal(gw?.p50, 50_000);
  assert.equal(gw?.p99, 99_000);
  // Counted once through auth's server span, not again through web's client span.
  assert.equal(edge("web", "auth")?.calls, 10);
  assert.equal(edge("web", "auth")?.p50, 800);
  assert.equal(edge("web", "db")?.calls, 50);
  assert.equal(edge("web", "db")?.rate, 5);
  assert.equal(edge("web", "db")?.p99, 300);
  assert.deepEqual(map.cycles, [["auth", "web"]]);
  assert.equal(edge("web", "auth")?.inCycle, true);
  assert.equal(edge("auth", "web")?.inCycle, true);
  assert.equal(gw?.inCycle, false);
  assert.equal(edge("web", "db")?.inCycle, false);
  assert.deepEqual(
    map.nodes.map((n) => [n.service, n.calls, n.inCycle]),
    [
      ["auth", 10, true],
      ["db", 0, false],
      ["gateway", 100, false],
      ["web", 110, true],
    ],
  );
});

test("a window with more spans than the scan may read is sampled, and the counts still estimate the whole", () => {
  const b = new DependencyMapBuilder();
  const scanned = store.scan(T0, T0 + WINDOW, (r) => b.add(r), { parents: true, max: 100 });
  assert.equal(scanned.sampledEvery, 3);
  assert.ok(scanned.spans <= 100);
  const gw = b.result(T0, T0 + WINDOW).edges.find((e) => e.from === "gateway" && e.to === "web");
  // Every 3rd span by arrival, each weighing 3: about a third of web's 100 server spans stand for 100 calls.
  assert.ok(gw && gw.calls >= 80 && gw.calls <= 120, `${gw?.calls} calls estimated`);
  assert.ok(gw && gw.p50 > 30_000 && gw.p50 < 70_000);
});

test("cycles: strongly connected groups and self-calls; a chain has none", () => {
  assert.deepEqual(
    findCycles(
      ["a", "b", "c"],
      [
        ["a", "b"],
        ["b", "c"],
      ],
    ),
    [],
  );
  assert.deepEqual(
    findCycles(
      ["a", "b", "c", "d", "e"],
      [
        ["a", "b"],
        ["b", "c"],
        ["c", "a"],
        ["c", "d"],
        ["e", "e"],
      ],
    ),
    [["a", "b", "c"], ["e"]],
  );
  const long = Array.from({ length: 20_000 }, (_, i) => [`s${i}`, `s${i + 1}`] as [string, string]);
  long.push(["s20000", "s0"]);
  assert.equal(findCycles([], long)[0].length, 20_001, "a long cycle does not overflow the stack");
});

test("Top-N orders services and routes by calls, p99 latency and total time", () => {
  const top = (by: "calls" | "latency" | "time") => {
    const b = new TopBuilder();
    store.scan(T0, T0 + WINDOW, (r) => b.add(r));
    return b.result(T0, T0 + WINDOW, by, 3);
  };
  const calls = top("calls");
  assert.deepEqual(
    calls.services.map((s) => [s.service, s.calls]),
    [
      ["web", 110],
      ["gateway", 100],
      ["auth", 10],
    ],
  );
  assert.deepEqual(
    calls.routes.map((r) => [r.service, r.route, r.calls]),
    [
      ["gateway", "proxy", 100],
      ["web", "/users/:id", 100],
      ["auth", "POST /check", 10],
    ],
  );
  const latency = top("latency");
  assert.deepEqual(
    latency.services.map((s) => [s.service, s.p99]),
    [
      ["gateway", 99_500],
      ["web", 99_000],
      ["auth", 800],
    ],
  );
  const time = top("time");
  assert.deepEqual(
    time.routes.map((r) => r.route),
    ["proxy", "/users/:id", "POST /check"],
  );
  assert.equal(time.routes[1].totalTime, 5050 * 1000);
});

test("one trace as a tree: children under parents by start, offsets from the trace start", () => {
  const tree = traceTree(
    store.trace("0000000000000000000000000000000a")[0].traceId,
    store.trace("0000000000000000000000000000000a"),
  );
  assert.equal(tree.spans, 7);
  // db sends no spans: it is in the trace as the peer web's client span called.
  assert.deepEqual(tree.services, ["auth", "db", "gateway", "web"]);
  assert.equal(tree.roots.length, 1);
  const lines: string[] = [];
  const walk = (n: (typeof tree.roots)[0]) => {
    lines.push(`${"  ".repeat(n.depth)}${n.service} ${n.name} +${n.offset}`);
    n.children.forEach(walk);
  };
  tree.roots.forEach(walk);
  assert.deepEqual(lines, [
    "gateway proxy +0",
    "  web GET /users/:id +100",
    "    web SELECT +200",
    "    web POST /check +300",
    "      auth POST /check +350",
    "        auth GET /profile +400",
    "          web GET /profile +450",
  ]);
});

test("a tree survives missing parents and parent loops", () => {
  const tree = traceTree("t", [
    makeSpan({ id: 1, parent: 9, start: 10 }),
    makeSpan({ id: 2, parent: 3, start: 20 }),
    makeSpan({ id: 3, parent: 2, start: 30 }),
  ]);
  assert.deepEqual(
    tree.roots.map((r) => r.spanId.slice(-1)),
    ["1", "2"],
  );
  assert.doesNotThrow(() => JSON.stringify(tree));
  assert.equal(tree.roots[1].children[0].spanId.slice(-1), "3");
});

test("percentiles are exact nearest-rank, and bounded past the cap", () => {
  const s = new Samples();
  for (let i = 100; i >= 1; i--) s.add(i);
  assert.deepEqual(s.percentiles(50, 99, 100), [50, 99, 100]);
  const capped = new Samples(1000);
  for (let i = 0; i < 100_000; i++) capped.add(i % 1000);
  const [p50] = capped.percentiles(50);
  assert.ok(p50 > 400 && p50 < 600, `p50 ${p50} of a uniform 0..999`);
});

test("a gateway span naming its upstream is the edge when the app sends no spans, and counted once when it does", () => {
  const ownDir = mkdtempSync(join(tmpdir(), "herd-traces-gateway-"));
  const own = new SpanStore({ dir: ownDir, clock, flushMs: 0 });
  try {
    const spans: Span[] = [];
    for (let i = 1; i <= 20; i++) {
      const start = T0 + i * 100_000;
      const peer = i <= 10 ? "shop/web" : "shop/static";
      // The gateway's one span per proxied request (gateway/spans.ts): SERVER, with peer.service.
      spans.push(
        makeSpan({
          trace: i,
          id: 1,
          service: "gateway",
          kind: "server",
          attributes: { "peer.service": peer },
          start,
          duration: 2000,
        }),
      );
      // shop/web sends spans, shop/static does not.
      if (i <= 10)
        spans.push(
          makeSpan({ trace: i, id: 2, parent: 1, service: "shop/web", start: start + 100, duration: 1000 }),
        );
    }
    own.recordSpans(spans);
    own.flush();
    const b = new DependencyMapBuilder();
    own.scan(T0, T0 + WINDOW, (r) => b.add(r), { parents: true });
    const map = b.result(T0, T0 + WINDOW);
    assert.deepEqual(
      map.edges.map((e) => [`${e.from}→${e.to}`, e.calls, e.p50]),
      [
        ["gateway→shop/static", 10, 2000],
        ["gateway→shop/web", 10, 1000],
      ],
    );
  } finally {
    own.close();
    rmSync(ownDir, { recursive: true, force: true });
  }
});
