// Forwarding to an OTLP/HTTP receiver (a real local server): batches,
// retries after failures, gives up with a count when the endpoint stays down.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { UrlGuard } from "../../common/url-guard.ts";
import { OtlpForwarder } from "./forwarder.ts";
import { parseOtlpTraces } from "./otlp.ts";
import type { Span } from "./span.ts";
import { makeSpan } from "./testing.ts";

/** The test's collectors listen on 127.0.0.1. */
const LOCAL = new UrlGuard({ allow: ["127.0.0.0/8"] });

/** A receiver that answers each request with the next status in `statuses` (then 200), keeping what it accepted. */
async function receiver(statuses: number[]) {
  const accepted: Span[] = [];
  const seen: { status: number; spans: number; auth: string | undefined }[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const spans = parseOtlpTraces(JSON.parse(Buffer.concat(chunks).toString()));
    const status = statuses.shift() ?? 200;
    seen.push({ status, spans: spans.length, auth: req.headers.authorization });
    if (status === 200) accepted.push(...spans);
    res.writeHead(status, status === 429 ? { "retry-after": "0" } : {}).end("{}");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  return {
    url,
    accepted,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const spans = (n: number) => Array.from({ length: n }, (_, i) => makeSpan({ trace: i + 1, name: `op${i}` }));

test("spans are sent in batches; 503 and 429 are retried until accepted", async (t) => {
  const rx = await receiver([503, 429]);
  const fwd = new OtlpForwarder({
    url: rx.url,
    guard: LOCAL,
    batchSpans: 4,
    retryBaseMs: 5,
    flushMs: 5,
    headers: { authorization: "Bearer x" },
  });
  t.after(async () => {
    await fwd.close(100);
    await rx.close();
  });
  fwd.recordSpans(spans(10));
  await fwd.drain();
  assert.deepEqual(
    rx.seen.map((s) => [s.status, s.spans]),
    [
      [503, 4],
      [429, 4],
      [200, 4],
      [200, 4],
      [200, 2],
    ],
  );
  assert.equal(rx.seen[0].auth, "Bearer x");
  assert.deepEqual(
    rx.accepted.map((s) => s.name),
    spans(10).map((s) => s.name),
  );
  assert.deepEqual(fwd.stats(), {
    sent: 10,
    dropped: 0,
    pending: 0,
    retries: 2,
    lastError: `${rx.url} answered 429`,
  });
});

test("a 400 is not retried; a down endpoint costs a bounded number of tries, then a count", async (t) => {
  const rx = await receiver([400]);
  const fwd = new OtlpForwarder({ url: rx.url, retryBaseMs: 5, flushMs: 5, guard: LOCAL });
  t.after(() => rx.close());
  fwd.recordSpans(spans(3));
  await fwd.drain();
  assert.equal(rx.seen.length, 1);
  assert.equal(fwd.stats().dropped, 3);
  await fwd.close(100);

  // Nothing listens on this port any more.
  const down = new OtlpForwarder({
    url: rx.url,
    guard: LOCAL,
    retryBaseMs: 5,
    flushMs: 5,
    maxAttempts: 3,
    maxPendingSpans: 5,
  });
  await rx.close();
  down.recordSpans(spans(8));
  assert.equal(down.stats().dropped, 3, "beyond 5 pending, the oldest are dropped at once");
  await down.drain();
  const s = down.stats();
  assert.equal(s.dropped, 8);
  assert.equal(s.retries, 2);
  assert.match(s.lastError ?? "", /fetch failed|ECONNREFUSED/);
  await down.close(100);
});
