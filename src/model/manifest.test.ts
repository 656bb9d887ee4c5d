import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../common/errors.ts";
import { normalizeService, parseBytes, parseManifest } from "./manifest.ts";

const problem = (text: string) => {
  try {
    parseManifest(text);
  } catch (err) {
    assert.ok(err instanceof HerdError);
    return err;
  }
  throw new Error("expected a HerdError");
};

test("the README's herd.yaml parses and normalises with every default filled in", () => {
  const m = parseManifest(`app: hello
services:
  web:
    command: node server.js
    instances: 2
    resources: { cpu: 0.25, memory: 128Mi }
    health: { path: /healthz }
    mode: cattle
    env: { GREETING: hi, WORKERS: 4 }
    routes: [ { host: hello.localhost, path: / } ]
`);
  const web = normalizeService("hello", "web", m.services.web, undefined);
  assert.equal(web.instances, 2);
  assert.equal(web.resources.memory, 128 * 1024 * 1024);
  assert.deepEqual(web.env, { GREETING: "hi", WORKERS: "4" });
  assert.equal(web.health.path, "/healthz");
  assert.equal(web.health.startupMs, 30_000);
  assert.deepEqual(web.routes, [{ host: "hello.localhost", path: "/" }]);
});

test("health: http with a path, tcp for routed services, process for the rest", () => {
  assert.equal(normalizeService("a", "web", { health: { path: "/h" } }, "x").health.kind, "http");
  assert.equal(normalizeService("a", "web", {}, "x").health.kind, "tcp");
  assert.equal(normalizeService("a", "worker", {}, "x").health.kind, "process");
  assert.equal(normalizeService("a", "web", { health: { tcp: false } }, "x").health.kind, "process");
});

test("web gets the default route <app>.localhost; other services none", () => {
  assert.deepEqual(normalizeService("shop", "web", {}, "node a.js").routes, [
    { host: "shop.localhost", path: "/" },
  ]);
  assert.deepEqual(normalizeService("shop", "worker", {}, "node w.js").routes, []);
});

test("errors name the field and the line", () => {
  const e = problem("services:\n  web:\n    command: x\n    instances: 1.5\n");
  assert.match(e.message, /^herd\.yaml:4: services\.web\.instances/);
  assert.equal(e.details?.[0].line, 4);
  const unknown = problem("services:\n  web:\n    comand: x\n");
  assert.match(unknown.message, /services\.web/);
  const mode = problem("services:\n  web:\n    mode: horse\n");
  assert.match(mode.message, /herd\.yaml:3: services\.web\.mode/);
  const name = problem("services:\n  Web_1: {}\n");
  assert.match(name.message, /services/);
});

test("bad YAML says where", () => {
  const e = problem("services:\n  web: [\n");
  assert.match(e.message, /herd\.yaml:\d+: not valid YAML/);
});

test("a service without a command and nothing to fall back on is an error", () => {
  assert.throws(() => normalizeService("a", "web", {}, undefined), /no command/);
});

test("memory quantities", () => {
  assert.equal(parseBytes("1Gi"), 1024 ** 3);
  assert.equal(parseBytes("512M"), 512e6);
  assert.equal(parseBytes(1000), 1000);
});

test("the same route twice in one herd.yaml is a conflict naming both places", () => {
  const e = problem(
    "services:\n  web:\n    command: a\n    routes: [ { host: a.test } ]\n  api:\n    command: b\n    routes:\n      - { host: a.test, path: / }\n",
  );
  assert.equal(e.code, "conflict");
  assert.match(
    e.message,
    /herd\.yaml:8: services\.api\.routes\.0: the same route as services\.web\.routes\.0/,
  );
});

test("a route's rate limit gets a burst of one second's worth and applies to the whole route by default", () => {
  const web = normalizeService("a", "web", { routes: [{ host: "a.test", rateLimit: { rate: 50 } }] }, "x");
  assert.deepEqual(web.routes[0].rateLimit, { rate: 50, burst: 50, per: "route" });
  const e = problem(
    "services:\n  web:\n    command: x\n    routes:\n      - host: a.test\n        rateLimit: { rate: 0 }\n",
  );
  assert.match(e.message, /herd\.yaml:6: services\.web\.routes\.0\.rateLimit\.rate/);
});

test("balance: least_request, or a hash on ip, a header or a cookie", () => {
  const route = (balance: unknown) =>
    normalizeService("a", "web", { routes: [{ host: "a.test", balance } as never] }, "x").routes[0].balance;
  assert.deepEqual(route("least_request"), { kind: "least_request" });
  assert.equal(route("round_robin"), undefined);
  assert.deepEqual(route({ hash: "ip" }), { kind: "hash", on: "ip" });
  assert.deepEqual(route({ hash: { header: "X-User" } }), { kind: "hash", on: "header", name: "x-user" });
  assert.deepEqual(route({ hash: { cookie: "session" } }), { kind: "hash", on: "cookie", name: "session" });
  assert.match(
    problem("services:\n  web:\n    command: x\n    routes: [ { host: a.test, balance: random } ]\n").message,
    /balance/,
  );
});

test("cors: defaults filled in, bad origins refused", () => {
  const web = normalizeService(
    "a",
    "web",
    { routes: [{ host: "a.test", cors: { origins: ["https://x.test"] } }] },
    "x",
  );
  assert.deepEqual(web.routes[0].cors, {
    origins: ["https://x.test"],
    methods: ["GET", "HEAD", "POST"],
    headers: [],
    exposeHeaders: [],
    credentials: false,
    maxAge: 600,
  });
  const e = problem(
    "services:\n  web:\n    command: x\n    routes:\n      - host: a.test\n        cors: { origins: [ x.test ] }\n",
  );
  assert.match(e.message, /services\.web\.routes\.0\.cors\.origins\.0/);
});

test("split: targets must be other services of the herd.yaml, weights at most 100 in all", () => {
  const ok = parseManifest(
    "services:\n  web:\n    command: a\n    routes:\n      - host: a.test\n        split: { to: [ { service: canary, weight: 10 } ], sticky: { cookie: sid } }\n  canary:\n    command: b\n",
  );
  const web = normalizeService("a", "web", ok.services.web, undefined);
  assert.deepEqual(web.routes[0].split, {
    to: [{ service: "canary", weight: 10 }],
    sticky: { on: "cookie", name: "sid" },
  });
  const missing = problem(
    "services:\n  web:\n    command: a\n    routes:\n      - host: a.test\n        split: { to: [ { service: nope, weight: 10 } ] }\n",
  );
  assert.match(
    missing.message,
    /herd\.yaml:6: services\.web\.routes\.0\.split\.to\.0\.service: no service nope/,
  );
  const heavy = problem(
    "services:\n  web:\n    command: a\n    routes:\n      - host: a.test\n        split: { to: [ { service: b, weight: 60 }, { service: b, weight: 50 } ] }\n  b:\n    command: b\n",
  );
  assert.match(heavy.message, /add up to 110/);
});

test("mirror: another service of the herd.yaml, 100% by default", () => {
  const m = parseManifest(
    "services:\n  web:\n    command: a\n    routes:\n      - { host: a.test, mirror: { service: next } }\n  next:\n    command: b\n",
  );
  assert.deepEqual(normalizeService("a", "web", m.services.web, undefined).routes[0].mirror, {
    service: "next",
    percent: 100,
  });
  assert.match(
    problem(
      "services:\n  web:\n    command: a\n    routes:\n      - { host: a.test, mirror: { service: web } }\n",
    ).message,
    /mirror\.service: is this route's own service/,
  );
});

test("probe: seconds to milliseconds, path from health.path by default, bad values name the field", () => {
  const m = parseManifest(`services:
  web:
    command: node server.js
    health: { path: /healthz }
    probe: { interval: 2, timeout: 0.5, unhealthyAfter: 3 }
  api:
    command: node api.js
    probe: { path: /ready }
  other:
    command: node other.js
    probe: {}
`);
  assert.deepEqual(normalizeService("a", "web", m.services.web, undefined).probe, {
    path: "/healthz",
    intervalMs: 2000,
    timeoutMs: 500,
    unhealthyAfter: 3,
    healthyAfter: 2,
  });
  assert.equal(normalizeService("a", "api", m.services.api, undefined).probe?.path, "/ready");
  assert.deepEqual(normalizeService("a", "other", m.services.other, undefined).probe, {
    path: "/",
    intervalMs: 5000,
    timeoutMs: 1000,
    unhealthyAfter: 2,
    healthyAfter: 2,
  });
  assert.equal(normalizeService("a", "web", {}, "x").probe, undefined);
  const interval = problem("services:\n  web:\n    command: x\n    probe: { interval: 0 }\n");
  assert.match(
    interval.message,
    /herd\.yaml:4: services\.web\.probe\.interval: .*seconds between two probes/,
  );
  const after = problem("services:\n  web:\n    command: x\n    probe: { unhealthyAfter: 1.5 }\n");
  assert.match(after.message, /services\.web\.probe\.unhealthyAfter/);
  const path = problem("services:\n  web:\n    command: x\n    probe: { path: healthz }\n");
  assert.match(path.message, /services\.web\.probe\.path/);
  const unknown = problem("services:\n  web:\n    command: x\n    probe: { every: 2 }\n");
  assert.match(unknown.message, /services\.web\.probe/);
});
