// Aggregation routes through a real proxy to real upstream servers: merged
// answers, partial answers when parts are slow, failing or not JSON, parts
// in parallel, and what goes upstream with each part.

import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { AggregatePartSpec, Route } from "../model/manifest.ts";
import type { Instance, Service } from "../model/objects.ts";
import { PART_MAX_BYTES } from "./aggregate.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import {
  closedPort,
  request,
  startUpstream,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

type Part = Partial<AggregatePartSpec> & { service: string; path: string };

interface Setup {
  proxy: GatewayProxy;
  port: number;
  /** Starts an upstream for `service` (closed after the test). */
  upstream(service: string, handler: http.RequestListener): Promise<TestUpstream>;
  /** Routes shop.test/dashboard to an aggregation of `parts` over the upstreams started so far. */
  route(parts: Record<string, Part>, extra?: Partial<Route>, policies?: (s: Service) => void): void;
  get(path?: string, headers?: Record<string, string>): Promise<Answer>;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: Record<string, unknown>;
  ms: number;
}

async function setup(t: { after(fn: () => Promise<void>): void }): Promise<Setup> {
  const proxy = new GatewayProxy({ logger: silentLogger });
  const upstreams: TestUpstream[] = [];
  const instances: Instance[] = [];
  t.after(async () => {
    await proxy.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });
  const port = await proxy.listen(0, "127.0.0.1");
  return {
    proxy,
    port,
    async upstream(service, handler) {
      const u = await startUpstream(handler);
      upstreams.push(u);
      instances.push(testInstance(`${service}-${u.port}`, { app: "shop", service }, "local", u.port));
      return u;
    },
    route(parts, extra = {}, policies) {
      const web = testService("default", "shop", "web", [
        {
          host: "shop.test",
          path: "/dashboard",
          ...extra,
          aggregate: {
            headers: ["authorization", "cookie"],
            parts: Object.entries(parts).map(([name, p]) => ({
              name,
              query: false,
              timeoutMs: 2000,
              ...p,
            })),
          },
        },
      ]);
      const services = [
        web,
        ...["users", "orders", "stock"].map((s) => testService("default", "shop", s, [])),
      ];
      for (const s of services) policies?.(s);
      proxy.table = buildRouteTable({ services, instances, nodes: [testNode("local", "127.0.0.1")] }, 1);
    },
    async get(path = "/dashboard", headers = {}) {
      const started = performance.now();
      const r = await request(port, "shop.test", path, { headers });
      const ms = performance.now() - started;
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(r.body);
      } catch {}
      return { ...r, json, ms };
    },
  };
}

function answerJson(body: unknown, delayMs = 0): http.RequestListener {
  return (_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    }, delayMs);
  };
}

test("parts are merged into one JSON object under their names", async (t) => {
  const s = await setup(t);
  const seen: http.IncomingHttpHeaders[] = [];
  const paths: string[] = [];
  await s.upstream("users", (req, res) => {
    seen.push(req.headers);
    paths.push(req.url ?? "");
    answerJson({ id: 7, name: "Ada" })(req, res);
  });
  await s.upstream("orders", (req, res) => {
    seen.push(req.headers);
    paths.push(req.url ?? "");
    answerJson([{ id: 1 }, { id: 2 }])(req, res);
  });
  s.route({
    user: { service: "users", path: "/me" },
    orders: { service: "orders", path: "/orders?recent=1", query: true },
  });
  const incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const r = await s.get("/dashboard?page=2", {
    authorization: "Bearer t0ken",
    cookie: "sid=abc",
    "x-private": "not for parts",
    "accept-encoding": "gzip",
    traceparent: incoming,
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers["content-type"], "application/json; charset=utf-8");
  assert.deepEqual(r.json, { user: { id: 7, name: "Ada" }, orders: [{ id: 1 }, { id: 2 }] });
  assert.equal(Object.keys(r.json).join(), "user,orders", "in the declared order");

  assert.deepEqual(paths.sort(), ["/me", "/orders?recent=1&page=2"], "the query only where asked");
  assert.equal(seen.length, 2);
  for (const h of seen) {
    assert.equal(h.authorization, "Bearer t0ken");
    assert.equal(h.cookie, "sid=abc");
    assert.equal(h["x-private"], undefined, "only the named client headers");
    assert.equal(h["accept-encoding"], undefined, "bodies must come back uncompressed to be merged");
    assert.equal(h["x-forwarded-for"], "127.0.0.1");
    assert.equal(h["x-forwarded-host"], "shop.test");
    assert.equal(h.host, "shop.test");
    const trace = String(h.traceparent).split("-");
    assert.equal(trace[1], "0af7651916cd43dd8448eb211c80319c", "the client's trace continues in every part");
    assert.notEqual(trace[2], "b7ad6b7169203331", "with the gateway's hop as the parent");
  }
  assert.equal(s.proxy.inflight, 0);
  assert.equal(s.proxy.table.backends.get("default/shop/users")?.inflight, 0);

  const head = await request(s.port, "shop.test", "/dashboard", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.body, "");
  assert.equal(
    Number(head.headers["content-length"]),
    Buffer.byteLength(r.body),
    "HEAD: the length a GET gets",
  );
  const post = await request(s.port, "shop.test", "/dashboard", { method: "POST", body: "{}" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, "GET, HEAD");
});

test("a part slower than its timeout is null with a timeout error, and the answer comes at the timeout", async (t) => {
  const s = await setup(t);
  let slowAborted = false;
  await s.upstream("users", answerJson({ id: 7 }));
  await s.upstream("orders", (req) => {
    // Never answers; the gateway must cut the request.
    req.socket.on("close", () => {
      slowAborted = true;
    });
  });
  s.route({
    user: { service: "users", path: "/me" },
    orders: { service: "orders", path: "/orders", timeoutMs: 300 },
  });
  const r = await s.get();
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.user, { id: 7 });
  assert.equal(r.json.orders, null);
  const errors = r.json._errors as Record<string, { code: string; message: string }>;
  assert.deepEqual(Object.keys(errors), ["orders"]);
  assert.equal(errors.orders.code, "timeout");
  assert.match(errors.orders.message, /shop\/orders did not answer within 300 ms/);
  assert.ok(r.ms >= 280, `answered after ${r.ms.toFixed(0)} ms, before the part's timeout`);
  assert.ok(r.ms < 1500, `answered after ${r.ms.toFixed(0)} ms, long after the part's 300 ms timeout`);
  await waitFor(() => slowAborted, 2000, "the slow part's connection to be cut");
  assert.equal(s.proxy.inflight, 0);
  for (const b of s.proxy.table.backends.values()) {
    assert.equal(b.inflight, 0, `${b.name} holds no request`);
    for (const e of b.endpoints) assert.equal(e.inflight, 0);
  }
});

test("a part answering 500, text or too much is null and explained; the others stand", async (t) => {
  const s = await setup(t);
  await s.upstream("users", answerJson({ id: 7 }));
  await s.upstream("orders", (_req, res) => {
    res.writeHead(500, { "content-type": "application/json" });
    res.end('{"code":"boom"}');
  });
  await s.upstream("stock", (req, res) => {
    if (req.url === "/big") {
      res.writeHead(200, { "content-type": "application/json" });
      // Chunked, no Content-Length: the limit is found while counting.
      res.write('"');
      res.write("x".repeat(PART_MAX_BYTES));
      res.end('"');
      return;
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<h1>hello</h1>");
  });
  s.route({
    user: { service: "users", path: "/me" },
    orders: { service: "orders", path: "/orders" },
    stock: { service: "stock", path: "/page" },
    big: { service: "stock", path: "/big" },
  });
  const r = await s.get();
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.user, { id: 7 });
  assert.equal(r.json.orders, null);
  assert.equal(r.json.stock, null);
  assert.equal(r.json.big, null);
  const errors = r.json._errors as Record<string, { code: string; status?: number }>;
  assert.deepEqual(errors.orders, { code: "status", status: 500, message: "shop/orders answered 500" });
  assert.equal(errors.stock.code, "invalid_json");
  assert.equal(errors.big.code, "too_large");
  assert.equal(errors.user, undefined);
});

test("every part down: 502 with each part's error; every part too slow: 504; a fallback replaces both", async (t) => {
  const s = await setup(t);
  const dead = await closedPort();
  await s.upstream("stock", answerJson({ late: true }, 2000));
  s.route({
    user: { service: "users", path: "/me" },
    orders: { service: "orders", path: "/orders" },
  });
  // Neither users nor orders has an instance.
  let r = await s.get();
  assert.equal(r.status, 502);
  assert.equal(r.json.code, "bad_gateway");
  assert.deepEqual(r.json._errors, {
    user: { code: "unavailable", message: "no running instance of shop/users" },
    orders: { code: "unavailable", message: "no running instance of shop/orders" },
  });

  // An instance nothing listens on.
  s.proxy.table = buildRouteTable(
    {
      services: [
        testService("default", "shop", "web", [
          {
            host: "shop.test",
            path: "/dashboard",
            aggregate: {
              headers: [],
              parts: [{ name: "user", service: "users", path: "/me", query: false, timeoutMs: 1000 }],
            },
          },
        ]),
        testService("default", "shop", "users", []),
      ],
      instances: [testInstance("u", { app: "shop", service: "users" }, "local", dead)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    2,
  );
  r = await s.get();
  assert.equal(r.status, 502);
  assert.equal((r.json._errors as Record<string, { code: string }>).user.code, "bad_gateway");

  s.route({
    a: { service: "stock", path: "/a", timeoutMs: 100 },
    b: { service: "stock", path: "/b", timeoutMs: 150 },
  });
  r = await s.get();
  assert.equal(r.status, 504);
  assert.equal(r.json.code, "timeout");
  assert.ok(r.ms < 1500, `answered after ${r.ms.toFixed(0)} ms`);

  const fallback = { status: 200, body: '{"degraded":true}', contentType: "application/json" };
  s.route({ a: { service: "stock", path: "/a", timeoutMs: 100 } }, { fallback });
  r = await s.get();
  assert.equal(r.status, 200);
  assert.equal(r.body, fallback.body);
  assert.equal(r.headers["x-herd-fallback"], "timeout");
});

test("parts run in parallel", async (t) => {
  const s = await setup(t);
  // Each upstream answers only once the other has been asked: sequential calls would time out.
  const arrived = new Set<string>();
  const waiting: (() => void)[] = [];
  const barrier =
    (name: string): http.RequestListener =>
    (req, res) => {
      arrived.add(name);
      const answer = () => answerJson({ name })(req, res);
      if (arrived.size === 2) {
        answer();
        for (const w of waiting.splice(0)) w();
      } else waiting.push(answer);
    };
  await s.upstream("users", barrier("users"));
  await s.upstream("orders", barrier("orders"));
  s.route({
    user: { service: "users", path: "/me", timeoutMs: 5000 },
    orders: { service: "orders", path: "/orders", timeoutMs: 5000 },
  });
  let r = await s.get();
  assert.deepEqual(r.json, { user: { name: "users" }, orders: { name: "orders" } });

  // And by the clock: two parts of 200 ms each take about as long as one, not 200 ms more. Paired
  // rounds (one part, then two) and their medians, so a busy machine slows both sides alike.
  await s.upstream("stock", answerJson({ ok: true }, 200));
  const one = { a: { service: "stock", path: "/a" } };
  const two = { ...one, b: { service: "stock", path: "/b" } };
  s.route(two);
  await s.get(); // warm the connection pool
  const singles: number[] = [];
  const pairs: number[] = [];
  for (let round = 0; round < 3; round++) {
    s.route(one);
    singles.push((await s.get()).ms);
    s.route(two);
    r = await s.get();
    assert.deepEqual(r.json, { a: { ok: true }, b: { ok: true } });
    pairs.push(r.ms);
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[1];
  assert.ok(median(singles) >= 195, `one 200 ms part took ${median(singles).toFixed(0)} ms`);
  assert.ok(
    median(pairs) - median(singles) < 150,
    `two 200 ms parts took ${median(pairs).toFixed(0)} ms, one ${median(singles).toFixed(0)} ms (in turn: 200 ms more)`,
  );
});

test("parts go through their service's breaker, and a missing part service is listed as a problem", async (t) => {
  const s = await setup(t);
  await s.upstream("users", answerJson({ id: 7 }));
  const orders = await s.upstream("orders", (_req, res) => {
    res.writeHead(503);
    res.end();
  });
  s.route(
    {
      user: { service: "users", path: "/me" },
      orders: { service: "orders", path: "/orders" },
      gone: { service: "nosuch", path: "/x" },
    },
    {},
    (service) => {
      if (service.name === "orders") service.spec.breaker = { failures: 2, openMs: 60_000 };
    },
  );
  assert.ok(
    s.proxy.table.problems.some((p) => /aggregates part gone from nosuch, which does not exist/.test(p)),
    String(s.proxy.table.problems),
  );
  for (let i = 0; i < 2; i++) {
    const r = await s.get();
    assert.equal((r.json._errors as Record<string, { code: string }>).orders.code, "status");
  }
  const r = await s.get();
  assert.equal(r.status, 200);
  const errors = r.json._errors as Record<string, { code: string }>;
  assert.equal(errors.orders.code, "circuit_open", "the breaker opened after two failures");
  assert.equal(errors.gone.code, "unavailable");
  assert.equal(orders.hits, 2, "an open breaker keeps the part from reaching the service");
});

test("a client that leaves cuts the parts still running and frees their counts", async (t) => {
  const s = await setup(t);
  let cut = false;
  await s.upstream("users", (req) => {
    req.socket.on("close", () => {
      cut = true;
    });
  });
  s.route({ user: { service: "users", path: "/me", timeoutMs: 10_000 } });
  const req = http.get({
    host: "127.0.0.1",
    port: s.port,
    path: "/dashboard",
    headers: { host: "shop.test" },
  });
  req.on("error", () => {});
  const users = s.proxy.table.backends.get("default/shop/users")!;
  await waitFor(() => users.inflight === 1, 2000, "the part to be in flight");
  assert.equal(s.proxy.inflight, 1);
  req.destroy();
  await waitFor(() => cut, 2000, "the part's upstream request to be cut");
  await waitFor(() => s.proxy.inflight === 0, 2000, "the aggregation to be released");
  assert.equal(users.inflight, 0);
  assert.equal(users.endpoints[0].inflight, 0);
});
