import assert from "node:assert/strict";
import { test } from "node:test";
import { HerdError } from "../common/errors.ts";
import {
  missingSecrets,
  normalizeService,
  parseBytes,
  parseManifest,
  referencedSecrets,
} from "./manifest.ts";

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
  assert.equal(normalizeService("a", "users", { health: { tcp: true } }, "x").health.kind, "tcp");
});

test("metrics: the path Prometheus scrapes; absent unless declared", () => {
  const m = parseManifest("app: a\nservices:\n  web:\n    command: x\n    metrics: { path: /metrics }\n");
  assert.deepEqual(m.services.web?.metrics, { path: "/metrics" });
  assert.equal(normalizeService("a", "web", {}, "x").metrics, undefined);
  const bad = problem("app: a\nservices:\n  web:\n    command: x\n    metrics: { path: metrics }\n");
  assert.match(bad.message, /herd\.yaml:5: services\.web\.metrics\.path/);
  const extra = problem("app: a\nservices:\n  web:\n    command: x\n    metrics: { path: /m, port: 9 }\n");
  assert.match(extra.message, /services\.web\.metrics/);
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
  // A required field left out is said so, not in TypeBox's words.
  const missing = problem("services:\n  web:\n    command: a\njobs:\n  tick:\n    command: x\n");
  assert.equal(missing.message, "herd.yaml:5: jobs.tick.schedule: is missing");
});

test("services: absent, the detected ones are taken when given; else what to write", () => {
  const m = parseManifest("release: node migrate.js\n", "herd.yaml", { web: { command: "node server.js" } });
  assert.deepEqual(m.services, { web: { command: "node server.js" } });
  // Written ones win over the detected.
  const own = parseManifest("services:\n  api: { command: a }\n", "herd.yaml", { web: { command: "b" } });
  assert.deepEqual(Object.keys(own.services), ["api"]);
  assert.match(
    problem("release: node migrate.js\n").message,
    /^herd\.yaml:1: services: is missing: give each service/,
  );
});

test("bad YAML says where", () => {
  const e = problem("services:\n  web: [\n");
  assert.match(e.message, /herd\.yaml:\d+: not valid YAML/);
});

test("an indentation mistake is one message on the line to fix", () => {
  const deeper = problem("app: hello\nservices:\n  web:\n    port: 3000\n      instances: 2\n");
  assert.equal(
    deeper.message,
    'herd.yaml:5: bad indentation: "instances: 2" is indented more than "port: 3000", which already has a value; start it in the same column as "port:"',
  );
  assert.deepEqual(deeper.details, [{ field: "(yaml)", message: deeper.message.slice(13), line: 5 }]);
  const shallower = problem("app: hello\nservices:\n  web:\n    port: 3000\n   instances: 2\n");
  assert.equal(
    shallower.message,
    'herd.yaml:5: bad indentation: "instances: 2" must start in the same column as the keys it belongs with',
  );
  const tab = problem("app: hello\nservices:\n\tweb:\n    port: 3000\n");
  assert.equal(tab.message, "herd.yaml:3: a tab indents this line: YAML indents with spaces only");
  // Other syntax errors keep the parser's words, without its excerpt.
  const dup = problem("app: hello\napp: x\n");
  assert.equal(dup.message, "herd.yaml:2: not valid YAML (column 1): Map keys must be unique");
});

test("a memory quantity in another tool's units says which units herd takes", () => {
  const mb = problem("app: hello\nservices:\n  web:\n    resources:\n      memory: 128MB\n");
  assert.equal(
    mb.message,
    'herd.yaml:5: services.web.resources.memory: must be a number of bytes, or one with a unit: Ki, Mi, Gi (powers of 1024) or K, M, G (powers of 1000), e.g. 128Mi; "128MB": did you mean 128Mi (powers of 1024) or 128M (powers of 1000)?',
  );
  assert.match(
    problem("services:\n  web:\n    resources:\n      memory: 1gib\n").message,
    /"1gib": did you mean 1Gi\?$/,
  );
  assert.match(
    problem("services:\n  web:\n    resources:\n      memory: lots\n").message,
    /must be a number of bytes, or one with a unit: Ki, Mi, Gi .*e\.g\. 128Mi$/,
  );
});

test("an unknown field: the line of its key, the field meant, or where it goes", () => {
  assert.equal(
    problem("services:\n  web:\n    comand: node s.js\n").message,
    "herd.yaml:3: services.web.comand: not a field here; did you mean command?",
  );
  assert.equal(
    problem("services:\n  web:\n    command: x\n    health: { Path: /h }\n").message,
    "herd.yaml:4: services.web.health.Path: not a field here; did you mean path?",
  );
  // routes: at the top, its value a list starting on the next line: the key's line is named.
  assert.equal(
    problem("services:\n  web:\n    command: x\nroutes:\n  - host: a.localhost\n").message,
    "herd.yaml:4: routes: not a field here; it goes under services.NAME (the fields here: app, services, alerts, release, jobs)",
  );
  assert.match(
    problem("services:\n  web:\n    command: x\n    colour: blue\n").message,
    /^herd\.yaml:4: services\.web\.colour: not a field here \(the fields here: command, image, .*, breaker\)$/,
  );
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

test("resources in units of the platform's unit; an explicit cpu or memory overrides its part", () => {
  const unit = { cpu: 0.5, memory: 512 * 1024 ** 2 };
  assert.deepEqual(normalizeService("a", "web", { resources: { units: 2 } }, "x", unit).resources, {
    cpu: 1,
    memory: 1024 ** 3,
    memoryLimit: 2 * 1024 ** 3,
  });
  const mixed = normalizeService("a", "web", { resources: { units: 2, memory: "100Mi" } }, "x");
  assert.deepEqual(mixed.resources, { cpu: 0.2, memory: 100 * 1024 ** 2 });
  assert.equal(mixed.units, 2);
  assert.deepEqual(normalizeService("a", "web", {}, "x").resources, {
    cpu: 0.1,
    memory: 128 * 1024 ** 2,
    memoryLimit: 256 * 1024 ** 2,
  });
});

test("memoryLimit: defaults bursting to twice the unit's memory, an explicit memory is its own limit, a limit below the request is refused", () => {
  const m = parseManifest(`services:
  web:
    command: node a.js
    resources: { memory: 200Mi, memoryLimit: 1Gi }
  fixed:
    command: node b.js
    resources: { memory: 200Mi }
  bad:
    command: node c.js
    resources: { memory: 512Mi, memoryLimit: 256Mi }
`);
  assert.deepEqual(normalizeService("a", "web", m.services.web, undefined).resources, {
    cpu: 0.1,
    memory: 200 * 1024 ** 2,
    memoryLimit: 1024 ** 3,
  });
  assert.deepEqual(normalizeService("a", "fixed", m.services.fixed, undefined).resources, {
    cpu: 0.1,
    memory: 200 * 1024 ** 2,
  });
  assert.throws(
    () => normalizeService("a", "bad", m.services.bad, undefined),
    (err: HerdError) =>
      err.code === "invalid" &&
      err.details?.[0]?.field === "services.bad.resources.memoryLimit" &&
      /256Mi is below the memory request 512Mi/.test(err.message),
  );
  assert.throws(
    () => parseManifest("services:\n  web:\n    resources: { memoryLimit: 12MB }\n"),
    /memoryLimit/,
  );
});

test("cpuLimit: a hard CPU ceiling at least the request; below it, an error naming the field", () => {
  const m = parseManifest(`services:
  web:
    command: node a.js
    resources: { cpu: 0.25, cpuLimit: 0.5 }
  slow:
    command: node b.js
    resources: { units: 2, cpuLimit: 0.1 }
`);
  assert.deepEqual(normalizeService("a", "web", m.services.web, undefined).resources, {
    cpu: 0.25,
    memory: 128 * 1024 ** 2,
    cpuLimit: 0.5,
    memoryLimit: 256 * 1024 ** 2,
  });
  assert.throws(
    () => normalizeService("a", "slow", m.services.slow, undefined),
    (err: HerdError) =>
      err.code === "invalid" &&
      err.details?.[0]?.field === "services.slow.resources.cpuLimit" &&
      /0\.1 is below the CPU request 0\.2/.test(err.message),
  );
  assert.throws(() => parseManifest("services:\n  web:\n    resources: { cpuLimit: 0 }\n"), /cpuLimit/);
});

test("placement: replicas apart become a required anti-affinity; unknown services and values are named", () => {
  const m = parseManifest(`services:
  web:
    command: node a.js
    placement:
      strategy: binpack
      replicas: apart
      nodeSelector: { disk: ssd }
      affinity: [ { service: db } ]
      tolerations: [ { key: gpu } ]
  db: { command: node db.js }
`);
  assert.deepEqual(normalizeService("a", "web", m.services.web, undefined).placement, {
    strategy: "binpack",
    nodeSelector: { disk: "ssd" },
    affinity: [{ service: "db", required: false }],
    antiAffinity: [{ service: "web", required: true }],
    tolerations: [{ key: "gpu" }],
  });
  const unknown = problem(`services:
  web:
    command: node a.js
    placement:
      antiAffinity: [ { service: cache, required: true } ]
`);
  assert.match(
    unknown.message,
    /herd\.yaml:5: services\.web\.placement\.antiAffinity\.0\.service: no service cache/,
  );
  const bad = problem(`services:
  web:
    command: node a.js
    placement: { strategy: pack }
`);
  assert.match(bad.message, /services\.web\.placement\.strategy/);
});

test("aggregate: parts of services of the herd.yaml, timeouts in seconds, headers lowercased", () => {
  const m = parseManifest(`services:
  web:
    command: a
    routes:
      - host: shop.localhost
        path: /dashboard
        aggregate:
          timeout: 0.5
          parts:
            user: { service: users, path: /me }
            orders: { service: orders, path: "/orders?recent=1", query: true, timeout: 2 }
            page: { service: web, path: /page }
  users:
    command: b
  orders:
    command: c
`);
  const route = normalizeService("shop", "web", m.services.web, undefined).routes[0];
  assert.deepEqual(route.aggregate, {
    headers: ["authorization", "cookie"],
    parts: [
      { name: "user", service: "users", path: "/me", query: false, timeoutMs: 500 },
      { name: "orders", service: "orders", path: "/orders?recent=1", query: true, timeoutMs: 2000 },
      { name: "page", service: "web", path: "/page", query: false, timeoutMs: 500 },
    ],
  });
  const custom = parseManifest(
    "services:\n  web:\n    command: a\n    routes:\n      - { host: a.test, aggregate: { headers: [ Authorization, X-User ], parts: { a: { service: web, path: / } } } }\n",
  );
  const spec = normalizeService("a", "web", custom.services.web, undefined).routes[0].aggregate;
  assert.deepEqual(spec?.headers, ["authorization", "x-user"]);
  assert.equal(spec?.parts[0].timeoutMs, 1000, "default: one second");
});

test("aggregate: bad input names the field", () => {
  const route = (extra: string, parts = "a: { service: web, path: /x }") =>
    problem(
      `services:\n  web:\n    command: a\n    routes:\n      - host: a.test\n        ${extra}aggregate: { timeout: 1, parts: { ${parts} } }\n`,
    );
  assert.match(
    route("", "a: { service: nope, path: /x }").message,
    /herd\.yaml:6: services\.web\.routes\.0\.aggregate\.parts\.a\.service: no service nope in this herd\.yaml/,
  );
  assert.match(
    route("split: { to: [ { service: web, weight: 10 } ] }\n        ").message,
    /herd\.yaml:7: services\.web\.routes\.0\.aggregate: cannot be combined with split/,
  );
  assert.match(
    route("mirror: { service: web }\n        ").message,
    /services\.web\.routes\.0\.aggregate: cannot be combined with mirror/,
  );
  assert.match(
    route("rewrite: /\n        ").message,
    /services\.web\.routes\.0\.aggregate: cannot be combined with rewrite/,
  );
  assert.match(
    route("methods: [ GET, POST ]\n        ").message,
    /services\.web\.routes\.0\.methods: an aggregation answers only GET and HEAD, not POST/,
  );
  assert.match(
    route("", "a: { service: web, path: /x, timeout: 0 }").message,
    /services\.web\.routes\.0\.aggregate\.parts\.a\.timeout/,
  );
  assert.match(route("", "_errors: { service: web, path: /x }").message, /aggregate\.parts/);
  assert.match(route("", "a: { service: web, path: x }").message, /aggregate\.parts\.a\.path/);
  assert.match(route("", "").message, /services\.web\.routes\.0\.aggregate\.parts/);
  const timeout = problem(
    "services:\n  web:\n    command: a\n    routes:\n      - { host: a.test, aggregate: { timeout: 100, parts: { a: { service: web, path: / } } } }\n",
  );
  assert.match(timeout.message, /services\.web\.routes\.0\.aggregate\.timeout: .*from 10ms to 1m; got 100$/);
  const header = problem(
    "services:\n  web:\n    command: a\n    routes:\n      - { host: a.test, aggregate: { headers: [ Host ], parts: { a: { service: web, path: / } } } }\n",
  );
  assert.match(header.message, /aggregate\.headers\.0: Host is set by the gateway/);
});

test("auth: API key and JWT defaults filled in; bad settings refused naming the field", () => {
  const manifest = parseManifest(
    [
      "services:",
      "  web:",
      "    command: x",
      "    routes:",
      "      - host: a.test",
      "        rateLimit: { rate: 10, per: consumer }",
      "        auth:",
      "          apiKey: { query: apikey }",
      "          jwt: { jwks: { url: 'https://idp.test/.well-known/jwks.json' }, audience: shop }",
      "",
    ].join("\n"),
  );
  const web = normalizeService("a", "web", manifest.services.web, "x");
  assert.deepEqual(web.routes[0].auth, {
    apiKey: { header: "x-api-key", query: "apikey", hideCredentials: false },
    jwt: {
      jwks: { url: "https://idp.test/.well-known/jwks.json" },
      audience: "shop",
      claim: "sub",
      hideCredentials: false,
    },
  });
  assert.equal(web.routes[0].rateLimit?.per, "consumer");
  const at = (auth: string) =>
    problem(`services:\n  web:\n    command: x\n    routes:\n      - host: a.test\n        auth: ${auth}\n`)
      .message;
  assert.match(at("{}"), /herd\.yaml:6: services\.web\.routes\.0\.auth/);
  assert.match(at("{ apiKey: { header: 'bad header' } }"), /services\.web\.routes\.0\.auth\.apiKey\.header/);
  assert.match(at("{ jwt: { jwks: { file: relative.json } } }"), /services\.web\.routes\.0\.auth\.jwt\.jwks/);
  assert.match(at("{ jwt: { jwks: { url: ftp://x } } }"), /services\.web\.routes\.0\.auth\.jwt\.jwks/);
  assert.match(at("{ basic: {} }"), /services\.web\.routes\.0\.auth\.basic/);
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
    /herd\.yaml:4: services\.web\.probe\.interval: must be a duration .* from 50ms to 5m; got 0$/,
  );
  const after = problem("services:\n  web:\n    command: x\n    probe: { unhealthyAfter: 1.5 }\n");
  assert.match(after.message, /services\.web\.probe\.unhealthyAfter/);
  const path = problem("services:\n  web:\n    command: x\n    probe: { path: healthz }\n");
  assert.match(path.message, /services\.web\.probe\.path/);
  const unknown = problem("services:\n  web:\n    command: x\n    probe: { every: 2 }\n");
  assert.match(unknown.message, /services\.web\.probe/);
});

test("env refers to secrets by name: kept apart from plain values; a missing one names the variable", () => {
  const m = parseManifest(`services:
  web:
    command: node server.js
    env: { GREETING: hi, DB_PASSWORD: { secret: db-password }, API_KEY: { secret: api-key } }
`);
  const web = normalizeService("shop", "web", m.services.web, undefined);
  assert.deepEqual(web.env, { GREETING: "hi" });
  assert.deepEqual(web.secrets, { DB_PASSWORD: "db-password", API_KEY: "api-key" });
  assert.deepEqual(referencedSecrets({ web }), ["api-key", "db-password"]);
  assert.equal(normalizeService("shop", "web", { env: { A: "1" } }, "x").secrets, undefined);
  assert.deepEqual(
    missingSecrets("shop", { web }, (s) => s === "api-key"),
    [
      {
        field: "services.web.env.DB_PASSWORD",
        message: "secret db-password is not set for app shop (herd secrets set db-password --app shop)",
      },
    ],
  );
  const bad = problem(`services:
  web:
    command: x
    env: { DB_PASSWORD: { secret: "no spaces" } }
`);
  assert.match(bad.message, /herd\.yaml:4: services\.web\.env\.DB_PASSWORD/);
  assert.match(bad.message, /\{ secret: NAME \}/);
});

test("a herd.yaml over 256 KiB is refused before it is parsed", () => {
  const big = `services:\n  web:\n    command: node server.js\n# ${"x".repeat(256 * 1024)}\n`;
  assert.throws(() => parseManifest(big), /herd.yaml is \d+ bytes; the limit is 256 KiB/);
});

test("rollout.deadline: a duration or seconds, 1s to 24h; a bad one names the field and the line", () => {
  const deadline = (value: string) =>
    parseManifest(`services:\n  web:\n    command: x\n    rollout: { deadline: ${value} }\n`);
  const ms = (value: string) =>
    normalizeService("a", "web", deadline(value).services.web, "x").rollout?.deadlineMs;
  assert.equal(ms("90s"), 90_000);
  assert.equal(ms("5m"), 300_000);
  assert.equal(ms("45"), 45_000);
  assert.equal(normalizeService("a", "web", {}, "x").rollout, undefined, "absent: the default applies");
  for (const bad of ["soon", "2d", "0s", "25h", "0"]) {
    const e = problem(`services:\n  web:\n    command: x\n    rollout: { deadline: ${bad} }\n`);
    assert.match(e.message, /^herd\.yaml:4: services\.web\.rollout\.deadline/, bad);
    assert.equal(e.details?.[0].field, "services.web.rollout.deadline", bad);
  }
  const unknown = problem("services:\n  web:\n    command: x\n    rollout: { deadlines: 5s }\n");
  assert.match(unknown.message, /services\.web\.rollout/);
});

test("config.onChange: file by default (left out), signal or restart kept, anything else refused", () => {
  const m = parseManifest(`app: a
services:
  web: { command: x, config: { onChange: signal } }
  worker: { command: x, config: { onChange: file } }
`);
  assert.deepEqual(normalizeService("a", "web", m.services.web, undefined).config, { onChange: "signal" });
  assert.equal(normalizeService("a", "worker", m.services.worker, undefined).config, undefined);
  const err = problem(`app: a
services:
  web: { command: x, config: { onChange: reload } }
`);
  assert.match(err.message, /services\.web\.config\.onChange/);
});

test("image and runtime: an image runs on docker with its own command; process with an image is refused by field", () => {
  const m = parseManifest(`services:
  cache:
    image: localhost:5000/team/cache:1.2
  worker:
    runtime: docker
    command: node worker.js
  web:
    command: node server.js
  both:
    image: herd-base:1
    runtime: process
`);
  assert.deepEqual(
    (({ command, image, runtime }) => ({ command, image, runtime }))(
      normalizeService("a", "cache", m.services.cache, "node fallback.js"),
    ),
    { command: "", image: "localhost:5000/team/cache:1.2", runtime: "docker" },
  );
  const worker = normalizeService("a", "worker", m.services.worker, undefined);
  assert.equal(worker.runtime, "docker");
  assert.equal(worker.image, undefined);
  // On docker without a command: the Dockerfile's CMD (empty here); the start script when there is one.
  assert.equal(normalizeService("a", "built", { runtime: "docker" }, undefined).command, "");
  assert.equal(normalizeService("a", "built", { runtime: "docker" }, "npm start").command, "npm start");
  const web = normalizeService("a", "web", m.services.web, undefined);
  assert.equal(web.runtime, undefined, "process stays the default and is not written down");
  assert.throws(
    () => normalizeService("a", "both", m.services.both, undefined),
    (err: HerdError) => err.code === "invalid" && err.details?.[0]?.field === "services.both.runtime",
  );
  assert.match(problem("services:\n  web:\n    image: '-rm /'\n").message, /image/);
  // Into Docker API paths it goes: no way out of /images/.
  assert.match(problem("services:\n  web:\n    image: a/../../containers/x\n").message, /image/);
  assert.match(problem("services:\n  web:\n    image: a//b\n").message, /image/);
  assert.match(problem("services:\n  web:\n    runtime: vm\n").message, /runtime/);
  // Bounds and types in a person's words, not the schema library's.
  assert.match(
    problem("services:\n  web:\n    command: x\n    instances: -1\n").message,
    /services\.web\.instances.*must be a whole number of at least 0/,
  );
  assert.match(
    problem("services:\n  web:\n    command: x\n    instances: two\n").message,
    /must be a whole number/,
  );
});

test("user: image is a container's; tenant, the default, is not written down", () => {
  const image = { image: "herd-base:1" };
  assert.equal(normalizeService("a", "c", { ...image, user: "image" }, undefined).user, "image");
  assert.equal(normalizeService("a", "c", { runtime: "docker", user: "image" }, undefined).user, "image");
  assert.equal(normalizeService("a", "c", { ...image, user: "tenant" }, undefined).user, undefined);
  assert.throws(
    () => normalizeService("a", "web", { command: "node server.js", user: "image" }, undefined),
    (err: HerdError) =>
      err.details?.[0]?.field === "services.web.user" &&
      /only a container has an image's user/.test(err.message),
  );
  assert.match(
    problem("services:\n  web:\n    image: herd-base:1\n    user: root\n").message,
    /services\.web\.user/,
  );
});

test("seconds: health, probe, route timeouts and aggregations take 2s, 300ms, 5m, 1h as well as numbers", () => {
  const m = parseManifest(`services:
  web:
    command: node server.js
    health: { path: /healthz, interval: 500ms, timeout: 2s, startup: 1h }
    probe: { interval: 1m, timeout: 50ms }
    routes:
      - host: shop.localhost
        timeouts: { connect: 10ms, request: 24h, idle: 90s }
      - host: shop.localhost
        path: /dashboard
        aggregate:
          timeout: 750ms
          parts:
            a: { service: web, path: /a, timeout: 1m }
            b: { service: web, path: /b }
`);
  const web = normalizeService("shop", "web", m.services.web, undefined);
  assert.deepEqual(
    [web.health.intervalMs, web.health.timeoutMs, web.health.startupMs],
    [500, 2000, 3600_000],
  );
  assert.deepEqual([web.probe?.intervalMs, web.probe?.timeoutMs], [60_000, 50]);
  assert.deepEqual(web.routes[0].timeouts, { connectMs: 10, requestMs: 86_400_000, idleMs: 90_000 });
  assert.deepEqual(
    web.routes[1].aggregate?.parts.map((p) => p.timeoutMs),
    [60_000, 750],
  );
  // A number is seconds, as before.
  const numbers = parseManifest(
    "services:\n  web:\n    command: x\n    health: { interval: 0.05, timeout: 300, startup: 1 }\n",
  );
  const health = normalizeService("a", "web", numbers.services.web, undefined).health;
  assert.deepEqual([health.intervalMs, health.timeoutMs, health.startupMs], [50, 300_000, 1000]);
});

test("seconds: out of range or not a duration, the field says what it takes and its range", () => {
  const health = (value: string) =>
    problem(`services:\n  web:\n    command: x\n    health: { interval: ${value} }\n`).message;
  const interval =
    "herd.yaml:4: services.web.health.interval: must be a duration like 300ms, 2s or 1m (or a number of seconds), from 50ms to 5m";
  assert.equal(health("10ms"), `${interval}; got 10ms`);
  assert.equal(health("6m"), `${interval}; got 6m`);
  assert.equal(health("0.01"), `${interval}; got 0.01`);
  assert.equal(health('"2 seconds"'), `${interval}; got 2 seconds`);
  assert.equal(health("1.5s"), `${interval}; got 1.5s`);
  assert.equal(health("true"), `${interval}; got true`);
  assert.doesNotThrow(() =>
    parseManifest("services:\n  web:\n    command: x\n    health: { interval: 50ms }\n"),
  );
  assert.equal(
    problem("services:\n  web:\n    command: x\n    health: { startup: 500ms }\n").message,
    "herd.yaml:4: services.web.health.startup: must be a duration like 2s, 1m or 1h (or a number of seconds), from 1s to 1h; got 500ms",
  );
  assert.match(
    problem("services:\n  web:\n    command: x\n    probe: { timeout: 2m }\n").message,
    /^herd\.yaml:4: services\.web\.probe\.timeout: must be a duration .*, from 50ms to 1m; got 2m$/,
  );
  const route = (yaml: string) =>
    problem(`services:\n  web:\n    command: x\n    routes:\n      - host: a.test\n        ${yaml}\n`)
      .message;
  assert.match(
    route("timeouts: { idle: 25h }"),
    /^herd\.yaml:6: services\.web\.routes\.0\.timeouts\.idle: must be a duration .*, from 10ms to 24h; got 25h$/,
  );
  assert.match(
    route("timeouts: { connect: 5ms }"),
    /services\.web\.routes\.0\.timeouts\.connect: .*from 10ms to 5m; got 5ms$/,
  );
  assert.match(
    route("aggregate: { timeout: 2m, parts: { a: { service: web, path: / } } }"),
    /services\.web\.routes\.0\.aggregate\.timeout: .*from 10ms to 1m; got 2m$/,
  );
  assert.match(
    route("aggregate: { parts: { a: { service: web, path: /, timeout: soon } } }"),
    /services\.web\.routes\.0\.aggregate\.parts\.a\.timeout: .*from 10ms to 1m; got soon$/,
  );
});

test("seconds: breaker.open and outlier.ejection take 250ms, 10m, 1h as well as numbers", () => {
  const policies = (yaml: string) => {
    const s = normalizeService(
      "a",
      "web",
      parseManifest(`services:\n  web:\n    command: x\n    ${yaml}\n`).services.web,
      undefined,
    );
    return [s.breaker, s.outlier];
  };
  assert.deepEqual(policies("breaker: { open: 250ms }\n    outlier: { ejection: 1h }"), [
    { failures: 5, openMs: 250 },
    { failures: 5, ejectionMs: 3600_000, maxShare: 0.5 },
  ]);
  assert.deepEqual(policies('breaker: { failures: 3, open: "10m" }\n    outlier: { ejection: 100ms }'), [
    { failures: 3, openMs: 600_000 },
    { failures: 5, ejectionMs: 100, maxShare: 0.5 },
  ]);
  // A number is seconds, as before; the defaults are 5s and 30s.
  assert.deepEqual(policies("breaker: { open: 0.1 }\n    outlier: { ejection: 3600 }"), [
    { failures: 5, openMs: 100 },
    { failures: 5, ejectionMs: 3600_000, maxShare: 0.5 },
  ]);
  assert.deepEqual(policies("breaker: {}\n    outlier: {}"), [
    { failures: 5, openMs: 5000 },
    { failures: 5, ejectionMs: 30_000, maxShare: 0.5 },
  ]);
});

test("seconds: breaker.open and outlier.ejection out of range or not a duration name the field and the range", () => {
  const message = (yaml: string) => problem(`services:\n  web:\n    command: x\n    ${yaml}\n`).message;
  const open =
    "herd.yaml:4: services.web.breaker.open: must be a duration like 300ms, 2s or 1m (or a number of seconds), from 100ms to 10m";
  assert.equal(message("breaker: { open: 11m }"), `${open}; got 11m`);
  assert.equal(message("breaker: { open: 50ms }"), `${open}; got 50ms`);
  assert.equal(message("breaker: { open: 0 }"), `${open}; got 0`);
  assert.equal(message("breaker: { open: 601 }"), `${open}; got 601`);
  assert.equal(message('breaker: { open: "5 s" }'), `${open}; got 5 s`);
  const ejection =
    "herd.yaml:4: services.web.outlier.ejection: must be a duration like 300ms, 2s or 1m (or a number of seconds), from 100ms to 1h";
  assert.equal(message("outlier: { ejection: 2h }"), `${ejection}; got 2h`);
  assert.equal(message("outlier: { ejection: 0.05 }"), `${ejection}; got 0.05`);
  assert.equal(message("outlier: { ejection: soon }"), `${ejection}; got soon`);
  assert.equal(message("outlier: { ejection: [ 30 ] }"), `${ejection}; got [30]`);
});

test("seconds: cors.maxAge takes whole seconds as a duration (10m) or a number; 1500ms is refused, not rounded", () => {
  const maxAge = (value: string) =>
    normalizeService(
      "a",
      "web",
      parseManifest(
        `services:\n  web:\n    command: x\n    routes:\n      - host: a.test\n        cors: { origins: [ "*" ], maxAge: ${value} }\n`,
      ).services.web,
      undefined,
    ).routes[0].cors?.maxAge;
  assert.equal(maxAge("10m"), 600);
  assert.equal(maxAge("24h"), 86_400);
  assert.equal(maxAge("2000ms"), 2);
  assert.equal(maxAge("0s"), 0);
  // A number is seconds, as before.
  assert.equal(maxAge("0"), 0);
  assert.equal(maxAge("300"), 300);
  const rule =
    "herd.yaml:6: services.web.routes.0.cors.maxAge: must be a duration in whole seconds like 2s, 1m or 1h (or a whole number of seconds), from 0s to 24h";
  for (const bad of ["1500ms", "1.5", "25h", "86401", "-1", "soon", '"10 m"'])
    assert.equal(
      problem(
        `services:\n  web:\n    command: x\n    routes:\n      - host: a.test\n        cors: { origins: [ "*" ], maxAge: ${bad} }\n`,
      ).message,
      `${rule}; got ${bad.replaceAll('"', "")}`,
    );
});
