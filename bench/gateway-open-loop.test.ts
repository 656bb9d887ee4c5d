// The open-loop client of bench:gateway (bench/gateway-open-loop.c), compiled
// with Debian's gcc and run against a local node:http server whose answers
// take a known time: requests evenly spaced at the asked rate, latency from
// the due time (a slow target's queue counts), statuses, lost connections,
// Content-Length and chunked answers.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { compileOpenLoop, runOpenLoop } from "./gateway-open-loop.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-open-loop-test-"));
let binary: string | undefined;
let skip: string | undefined;

/** When each request arrived (ms, performance.now()), its path and Host and x-test headers. */
const arrivals: { at: number; path: string; host?: string; test?: string }[] = [];
const server = http.createServer((req, res) => {
  arrivals.push({
    at: performance.now(),
    path: req.url ?? "",
    host: req.headers.host,
    test: req.headers["x-test"] as string,
  });
  const delay = Number(new URL(req.url ?? "/", "http://x").searchParams.get("delay") ?? 0);
  setTimeout(() => {
    if (req.url?.startsWith("/drop")) {
      req.socket.destroy();
    } else if (req.url?.startsWith("/fail")) {
      res.writeHead(503, { "content-length": "4" }).end("busy");
    } else {
      // No Content-Length: node:http answers chunked, in two chunks here.
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("hel");
      res.end("lo\n");
    }
  }, delay);
});
let base = "";

before(async () => {
  try {
    binary = await compileOpenLoop(dir);
  } catch (err) {
    // Only where gcc is missing and cannot be installed (not root): the compile's own errors fail the test below.
    if (!(err instanceof Error && /needs root/.test(err.message))) throw err;
    skip = `gcc is missing and cannot be installed here: ${err.message}`;
  }
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

test("sends evenly spaced requests at the asked rate, with the given headers, and reads chunked answers", async (t) => {
  if (skip) return t.skip(skip);
  arrivals.length = 0;
  // 50 a second over 8 connections: one request every 20 ms. A bursty client sends 8 together every 160 ms.
  // The arrival times are taken in this process's event loop, which a busy machine delays: the checks
  // leave room for that, not for bursts.
  const r = await runOpenLoop(
    binary as string,
    { url: `${base}/even?delay=20`, headers: { Host: "app.example", "x-test": "yes" } },
    { rate: 50, seconds: 3, warmupSeconds: 0.5, connections: 8 },
  );
  // 3 s at 50/s are measured; the warm-up's 25 are sent but not counted.
  assert.equal(r.completed, 150);
  assert.equal(r.errors, 0);
  assert.equal(r.non2xx, 0);
  assert.ok(r.reached);
  assert.equal(arrivals.length, 175);
  assert.deepEqual(
    new Set(arrivals.map((a) => `${a.path} ${a.host} ${a.test}`)),
    new Set(["/even?delay=20 app.example yes"]),
  );
  // Each answer takes 20 ms; a busy machine may add to it, never take from it.
  assert.ok(r.p50 >= 19 && r.p50 < 1000, `p50 ${r.p50} ms`);
  assert.ok(r.p99 >= r.p50 && r.max >= r.p99);
  const gaps = arrivals
    .slice(1)
    .map((a, i) => a.at - (arrivals[i] as { at: number }).at)
    .sort((a, b) => a - b);
  const medianGap = gaps[gaps.length >> 1] as number;
  assert.ok(medianGap > 8, `median gap ${medianGap} ms, 20 ms asked (a burst's are near 0)`);
  const near = gaps.filter((g) => g < 2).length;
  assert.ok(near < gaps.length / 2, `${near} of ${gaps.length} requests came within 2 ms of the one before`);
  // The whole schedule took 3.5 s, not less (a client sending as fast as it can) or much more.
  const span = (arrivals.at(-1)?.at ?? 0) - (arrivals[0]?.at ?? 0);
  assert.ok(span > 3300 && span < 5000, `175 requests over ${span} ms, 3,480 ms asked`);
});

test("counts the wait of requests a slow target could not take yet (latency from the due time)", async (t) => {
  if (skip) return t.skip(skip);
  // One connection, 50 ms an answer, 50 due a second: 20 a second are answered, and the queue grows.
  // The 50th request is due at 0.98 s and answered near 2.5 s; measured from its write it would take 50 ms.
  const r = await runOpenLoop(
    binary as string,
    { url: `${base}/slow?delay=50`, headers: {} },
    { rate: 50, seconds: 1, warmupSeconds: 0, connections: 1 },
  );
  assert.equal(r.completed, 50);
  assert.ok(r.max > 1200, `max ${r.max} ms: the queue's wait is not counted`);
  assert.ok(r.p50 > 400, `p50 ${r.p50} ms: the queue's wait is not counted`);
  assert.ok(r.sendDelayP99 > 1000, `requests written ${r.sendDelayP99} ms late at the 99th percentile`);
  // That lateness was the target's (no free connection), not the client's own: its lag stays small.
  assert.ok(r.clientLagP99 < r.sendDelayP99 / 4, `the client's own lag ${r.clientLagP99} ms at the p99`);
});

test("counts non-2xx answers apart and requests lost with their connection as errors", async (t) => {
  if (skip) return t.skip(skip);
  const failing = await runOpenLoop(
    binary as string,
    { url: `${base}/fail`, headers: {} },
    { rate: 100, seconds: 0.5, warmupSeconds: 0, connections: 4 },
  );
  assert.deepEqual([failing.completed, failing.non2xx, failing.errors], [50, 50, 0]);
  const dropped = await runOpenLoop(
    binary as string,
    { url: `${base}/drop`, headers: {} },
    { rate: 100, seconds: 0.5, warmupSeconds: 0, connections: 4 },
  );
  assert.deepEqual([dropped.completed, dropped.errors], [0, 50]);
  assert.equal(dropped.reached, false);
});
