// Rate limiting through a real proxy and upstream: the admitted rate, the 429
// and its headers, and state that survives a table rebuild.

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { Route } from "../model/manifest.ts";
import { TokenBucket } from "./policies/token-bucket.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable, type RouteObjects } from "./route-table.ts";
import { startUpstream, type TestUpstream, testInstance, testNode, testService } from "./testing.ts";

let proxy: GatewayProxy;
let port: number;
let upstream: TestUpstream;
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function objects(rateLimit: Route["rateLimit"]): RouteObjects {
  return {
    services: [
      testService("default", "shop", "web", [{ host: "shop.test", rateLimit }]),
      testService("default", "shop", "free", [{ host: "free.test" }]),
    ],
    instances: [
      testInstance("w", { app: "shop", service: "web" }, "local", upstream.port),
      testInstance("f", { app: "shop", service: "free" }, "local", upstream.port),
    ],
    nodes: [testNode("local", "127.0.0.1")],
  };
}

before(async () => {
  upstream = await startUpstream((_req, res) => res.end("ok"));
  proxy = new GatewayProxy({ logger: silentLogger });
  port = await proxy.listen(0, "127.0.0.1");
});
after(async () => {
  agent.destroy();
  await proxy.close();
  await upstream.close();
});

function get(host: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: "/", headers: { host }, agent }, (res) => {
        let body = "";
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on("error", reject);
  });
}

test("the limiter admits its rate within ±10% of what it was asked under sustained load; others are 429 with headers", async (t) => {
  proxy.table = buildRouteTable(objects({ rate: 100, burst: 10, per: "route" }), 1);
  const started = Date.now();
  const counts = { ok: 0, limited: 0 };
  const asked: number[] = [];
  let sample: Awaited<ReturnType<typeof get>> | undefined;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (Date.now() - started < 3000) {
        asked.push(Date.now());
        const r = await get("shop.test");
        if (r.status === 200) counts.ok++;
        else if (r.status === 429) {
          counts.limited++;
          sample ??= r;
        } else assert.fail(`unexpected ${r.status}`);
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  // Never more than the rate allows (its burst plus rate × time)…
  const most = 10 + 100 * seconds;
  assert.ok(counts.ok <= most * 1.1, `admitted ${counts.ok}, at most ${most.toFixed(0)} allowed`);
  // …and what it was asked for when it was asked: a bucket (the logic policies.test.ts checks exactly)
  // fed the moments the requests were sent. On a busy machine the clients stall now and then; a
  // bucket full meanwhile keeps only its burst, so the stalls are not the limiter's doing.
  const bucket = new TokenBucket(100, 10, started);
  const expected = asked.sort((a, b) => a - b).filter((at) => bucket.take(at).ok).length;
  t.diagnostic(`admitted ${counts.ok} of ${asked.length} in ${seconds.toFixed(2)} s; a bucket: ${expected}`);
  assert.ok(
    Math.abs(counts.ok - expected) <= Math.max(3, expected * 0.1),
    `admitted ${counts.ok}; a bucket of the same rate would have admitted ${expected} of the ${asked.length} asked`,
  );
  assert.ok(counts.limited > 0, "the load exceeded the rate");
  assert.ok(sample);
  assert.equal(JSON.parse(sample.body).code, "rate_limited");
  assert.ok(Number(sample.headers["retry-after"]) >= 1);
  assert.match(String(sample.headers.ratelimit), /^limit=10, remaining=0, reset=\d+$/);
  assert.match(String(sample.headers["ratelimit-policy"]), /^10;w=/);
  assert.equal((await get("free.test")).status, 200, "another route is not limited");
});

test("a rebuilt table keeps the buckets of unchanged limits", async () => {
  const first = buildRouteTable(objects({ rate: 1, burst: 2, per: "ip" }), 1);
  proxy.table = first;
  assert.equal((await get("shop.test")).status, 200);
  assert.equal((await get("shop.test")).status, 200);
  assert.equal((await get("shop.test")).status, 429);
  // An instance change rebuilds the table: the drained bucket stays drained.
  proxy.table = buildRouteTable(objects({ rate: 1, burst: 2, per: "ip" }), 2, { previous: first });
  assert.equal((await get("shop.test")).status, 429);
  // A changed limit starts afresh.
  proxy.table = buildRouteTable(objects({ rate: 1, burst: 3, per: "ip" }), 3, { previous: proxy.table });
  assert.equal((await get("shop.test")).status, 200);
});
