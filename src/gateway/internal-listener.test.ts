// Service discovery's internal listener with real upstreams: a caller token
// reaches its own tenant's services by app/service name (balanced over the
// same backend as public routes), never another tenant's; a forged token is
// refused; the spans name the caller, so the map draws caller → service;
// /metrics counts internal requests by caller, refusals too; WebSockets pass.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, test } from "node:test";
import { callerToken, serviceEnv, serviceUrlVariable } from "../common/internal-caller.ts";
import { silentLogger } from "../common/log.ts";
import { DependencyMapBuilder } from "../observe/traces/analysis.ts";
import { parseGatewayBatch } from "../observe/traces/gateway-batch.ts";
import type { Span } from "../observe/traces/span.ts";
import { spanFromColumns } from "../observe/traces/span-store.ts";
import { InternalListener, parseTarget } from "./internal-listener.ts";
import { processFamilies, renderText } from "./metrics.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { GatewaySpans } from "./spans.ts";
import {
  metricSum,
  parseMetrics,
  request,
  startUpstream,
  startWsEcho,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  waitFor,
  wsRoundTrip,
} from "./testing.ts";

const key = randomBytes(32);
const recorded: Span[] = [];
let proxy: GatewayProxy;
let internal: InternalListener;
let port: number;
const upstreams: TestUpstream[] = [];
const seen: { name: string; url: string; traceparent?: string }[] = [];

function upstream(name: string): Promise<TestUpstream> {
  return startUpstream((req, res) => {
    seen.push({ name, url: req.url ?? "", traceparent: req.headers.traceparent as string | undefined });
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(name);
  });
}

/** Runs `body` with a table of `acme/<app>/web` alone, served by `upstreamPort`; the suite's table is back after. */
async function withOnly(app: string, upstreamPort: number, revision: number, body: () => Promise<void>) {
  const table = proxy.table;
  proxy.table = buildRouteTable(
    {
      services: [testService("acme", app, "web", [])],
      instances: [testInstance(`${app}0`, { tenant: "acme", app, service: "web" }, "local", upstreamPort)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    revision,
  );
  try {
    await body();
  } finally {
    proxy.table = table;
  }
}

before(async () => {
  const [a, b, other] = await Promise.all([upstream("hello-a"), upstream("hello-b"), upstream("other")]);
  upstreams.push(a, b, other);
  proxy = new GatewayProxy({ logger: silentLogger });
  proxy.spans = new GatewaySpans({
    postBatch(body: string) {
      recorded.push(...parseGatewayBatch(JSON.parse(body)).map(spanFromColumns));
      return true;
    },
  });
  proxy.table = buildRouteTable(
    {
      services: [
        testService("acme", "hello", "web", [{ host: "hello.test" }]),
        testService("acme", "front", "web", []),
        testService("rival", "secret", "web", []),
      ],
      instances: [
        testInstance("h0", { tenant: "acme", app: "hello", service: "web" }, "local", a.port),
        testInstance("h1", { tenant: "acme", app: "hello", service: "web" }, "local", b.port),
        testInstance("s0", { tenant: "rival", app: "secret", service: "web" }, "local", other.port),
      ],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  internal = new InternalListener(proxy, key);
  port = await internal.listen(0, "127.0.0.1");
});

after(async () => {
  await internal.close();
  await proxy.close();
  await Promise.all(upstreams.map((u) => u.close()));
});

const front = { tenant: "acme", app: "front", service: "web" };
const urlPath = (caller: typeof front, app: string, service: string, rest = "") =>
  `/.herd/${callerToken(key, caller)}/${app}/${service}${rest}`;

test("parseTarget splits token, app, service and the upstream path", () => {
  assert.deepEqual(parseTarget("/.herd/t.m/hello/web/a/b?x=1"), {
    token: "t.m",
    app: "hello",
    service: "web",
    path: "/a/b?x=1",
  });
  assert.deepEqual(parseTarget("/.herd/t.m/hello/web")?.path, "/");
  assert.deepEqual(parseTarget("/.herd/t.m/hello/web?q")?.path, "/?q");
  assert.equal(parseTarget("/.herd/t.m/hello"), null);
  assert.equal(parseTarget("/hello/web"), null);
  assert.equal(parseTarget("/.herd//hello/web"), null);
});

test("a caller reaches its tenant's service by name, balanced over its instances, path and query kept", async () => {
  seen.length = 0;
  const bodies = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const res = await request(port, "127.0.0.1", urlPath(front, "hello", "web", `/greet?n=${i}`));
    assert.equal(res.status, 200);
    bodies.add(res.body);
  }
  assert.deepEqual([...bodies].sort(), ["hello-a", "hello-b"]);
  assert.deepEqual(
    seen.map((s) => s.url),
    ["/greet?n=0", "/greet?n=1", "/greet?n=2", "/greet?n=3"],
  );
});

test("a POST body reaches the service", async () => {
  const echo = await startUpstream((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => res.end(`${req.method} ${req.url} ${body}`));
  });
  upstreams.push(echo);
  await withOnly("echo", echo.port, 2, async () => {
    const res = await request(port, "127.0.0.1", urlPath(front, "echo", "web", "/in"), {
      method: "POST",
      body: "payload",
      headers: { "content-type": "text/plain" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.body, "POST /in payload");
  });
});

test("another tenant's service is not found for the caller; a forged or missing token is refused", async () => {
  seen.length = 0;
  const cross = await request(port, "127.0.0.1", urlPath(front, "secret", "web"));
  assert.equal(cross.status, 404);
  assert.match(cross.body, /no service secret\/web in tenant acme/);
  // A token claiming the rival tenant, signed with another key.
  const forged = callerToken(randomBytes(32), { tenant: "rival", app: "x", service: "web" });
  assert.equal((await request(port, "127.0.0.1", `/.herd/${forged}/secret/web/`)).status, 403);
  assert.equal((await request(port, "127.0.0.1", "/secret/web/")).status, 403);
  // A genuine token whose subject was edited (tenant changed, MAC kept) fails too.
  const genuine = callerToken(key, front);
  const edited = `${Buffer.from("rival/front/web").toString("base64url")}${genuine.slice(genuine.indexOf("."))}`;
  assert.equal((await request(port, "127.0.0.1", `/.herd/${edited}/secret/web/`)).status, 403);
  assert.equal(seen.length, 0, "no refused request reached an instance");
  // The public listener's route table is not reachable by internal names without a token.
  const rivalOwn = await request(
    port,
    "127.0.0.1",
    urlPath({ tenant: "rival", app: "x", service: "y" }, "secret", "web"),
  );
  assert.equal(rivalOwn.status, 200);
  assert.equal(rivalOwn.body, "other");
});

test("the span names the caller as a client of the service, with traceparent passed on", async () => {
  proxy.spans?.flush();
  seen.length = 0;
  const traceId = "0af7651916cd43dd8448eb211c80319c";
  await request(port, "127.0.0.1", urlPath(front, "hello", "web", "/t"), {
    headers: { traceparent: `00-${traceId}-b7ad6b7169203331-01` },
  });
  await waitFor(() => {
    proxy.spans?.flush();
    return recorded.some((s) => s.traceId === traceId);
  });
  const span = recorded.find((s) => s.traceId === traceId) as Span;
  assert.equal(span.traceId, traceId);
  assert.equal(span.service, "front/web");
  assert.equal(span.kind, "client");
  assert.equal(span.attributes["peer.service"], "hello/web");
  assert.match(seen[0].traceparent ?? "", new RegExp(`^00-${traceId}-${span.spanId}-01$`));
  const map = new DependencyMapBuilder();
  map.add({ ...span, parentService: null, peer: "hello/web", calledThrough: false, weight: 1 } as never);
  assert.deepEqual(
    map.result(0, 1e6).edges.map((e) => [e.from, e.to]),
    [["front/web", "hello/web"]],
  );
});

test("serviceEnv names one URL per service of the tenant, each carrying the caller's token", () => {
  const env = serviceEnv({ url: "http://127.0.0.1:9", key: key.toString("base64url") }, front, [
    "hello/web",
    "my-app/api-v2",
    "bad/Name",
  ]);
  assert.deepEqual(
    Object.keys(env).sort(),
    [serviceUrlVariable("hello", "web"), "HERD_SERVICE_MY_APP_API_V2_URL"].sort(),
  );
  assert.equal(
    env.HERD_SERVICE_HELLO_WEB_URL,
    `http://127.0.0.1:9/.herd/${callerToken(key, front)}/hello/web`,
  );
});

/** The proxy's /metrics as samples (the internal listener's series are the proxy's). */
async function samples() {
  return parseMetrics(renderText(await processFamilies(proxy)));
}

test("/metrics counts internal requests by caller and service, refusals too, and their connections", async () => {
  const hello = { route: "internal", tenant: "acme", app: "hello", service: "web", caller: "front/web" };
  const before = await samples();
  const count = (s: typeof before, labels: Record<string, string>) =>
    metricSum(s, "herd_gateway_requests_total", labels);
  for (let i = 0; i < 3; i++) {
    assert.equal((await request(port, "127.0.0.1", urlPath(front, "hello", "web", "/m"))).status, 200);
  }
  assert.equal((await request(port, "127.0.0.1", urlPath(front, "secret", "web"))).status, 404);
  assert.equal((await request(port, "127.0.0.1", "/.herd/nope/hello/web")).status, 403);
  const after = await samples();
  assert.equal(
    count(after, { ...hello, code: "200", outcome: "upstream" }) -
      count(before, { ...hello, code: "200", outcome: "upstream" }),
    3,
  );
  const missing = { route: "internal", tenant: "acme", app: "", caller: "front/web", code: "404" };
  assert.equal(
    count(after, { ...missing, outcome: "no_route" }) - count(before, { ...missing, outcome: "no_route" }),
    1,
  );
  const forbidden = { route: "internal", tenant: "", caller: "", code: "403", outcome: "unauthorized" };
  assert.equal(count(after, forbidden) - count(before, forbidden), 1);
  const durations = (s: typeof before) => metricSum(s, "herd_gateway_request_duration_seconds_count", hello);
  assert.equal(durations(after) - durations(before), 3);

  // An open keep-alive connection to the internal listener is in the open-connections gauge.
  const agent = new http.Agent({ keepAlive: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const path = urlPath(front, "hello", "web", "/k");
      http
        .get({ port, host: "127.0.0.1", path, agent }, (res) => {
          res.resume();
          res.on("end", resolve);
        })
        .on("error", reject);
    });
    const open = metricSum(await samples(), "herd_gateway_open_connections");
    assert.ok(open >= 1, `open connections ${open}`);
  } finally {
    agent.destroy();
  }
});

test("a WebSocket reaches the service by its internal name; a bad token's upgrade is refused", async () => {
  const chat = await startWsEcho("chat");
  upstreams.push(chat);
  await withOnly("chat", chat.port, 3, async () => {
    assert.equal(
      await wsRoundTrip(`ws://127.0.0.1:${port}${urlPath(front, "chat", "web", "/ws")}`),
      "chat:hi",
    );
    assert.equal(chat.upgrades, 1);
    assert.equal(await wsRoundTrip(`ws://127.0.0.1:${port}/.herd/forged.x/chat/web/ws`), "error");
    assert.equal(await wsRoundTrip(`ws://127.0.0.1:${port}${urlPath(front, "nope", "web")}`), "error");
    assert.equal(chat.upgrades, 1, "refused upgrades never reached the service");
  });
});
