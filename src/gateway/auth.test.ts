// Route auth through a real proxy and upstream: API keys, consumers' HS256 and
// RS256 JWT credentials, JWKS from a file and from a URL (with key rotation),
// expired tokens, X-Consumer-Name, and per-consumer rate limits.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { createLogger, silentLogger } from "../common/log.ts";
import { UrlGuard } from "../common/url-guard.ts";
import type { Route } from "../model/manifest.ts";
import type { Consumer } from "../model/objects.ts";
import { RemoteJwks } from "./jwks.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable, type RouteObjects, type RouteTable } from "./route-table.ts";
import {
  request,
  startUpstream,
  type TestUpstream,
  testConsumer,
  testInstance,
  testNode,
  testService,
} from "./testing.ts";

let proxy: GatewayProxy;
let port: number;
let upstream: TestUpstream;
let idp: { a: CryptoKey; b: CryptoKey; consumerRsa: CryptoKey };
let consumerRsaPem: string;
let jwksServer: http.Server;
let jwksUrl: string;
/** What the JWKS server serves now, and how often it was asked. */
const served = { keys: [] as unknown[], fetches: 0 };
/** The provider's next key (kid b), served after the rotation. */
let rotatedKey: unknown;
const dir = mkdtempSync(join(tmpdir(), "herd-auth-"));
const jwksFile = join(dir, "jwks.json");
const HS_SECRET = "a-long-shared-secret-of-32-bytes!";

before(async () => {
  // The upstream echoes what it was sent, so tests see the forwarded headers and path.
  upstream = await startUpstream((req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  proxy = new GatewayProxy({ logger: silentLogger });
  port = await proxy.listen(0, "127.0.0.1");
  const a = await generateKeyPair("RS256", { extractable: true });
  const b = await generateKeyPair("RS256", { extractable: true });
  const c = await generateKeyPair("RS256", { extractable: true });
  idp = { a: a.privateKey, b: b.privateKey, consumerRsa: c.privateKey };
  consumerRsaPem = await exportSPKI(c.publicKey);
  const jwkA = { ...(await exportJWK(a.publicKey)), kid: "a", alg: "RS256", use: "sig" };
  const jwkB = { ...(await exportJWK(b.publicKey)), kid: "b", alg: "RS256", use: "sig" };
  writeFileSync(jwksFile, JSON.stringify({ keys: [jwkA] }));
  served.keys = [jwkA];
  jwksServer = http.createServer((_req, res) => {
    served.fetches++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: served.keys }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  rotatedKey = jwkB;
});

after(async () => {
  await proxy.close();
  await upstream.close();
  jwksServer.closeAllConnections();
  await new Promise<void>((resolve) => jwksServer.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

const CONSUMERS = (): Consumer[] => [
  testConsumer("alice", ["alice-key-1"], [{ key: "alice-issuer", algorithm: "HS256", secret: HS_SECRET }]),
  testConsumer("bob", ["bob-key-1"], [{ key: "bob-issuer", algorithm: "RS256", publicKey: consumerRsaPem }]),
  // Another tenant's consumer: its key must not open tenant default's routes.
  testConsumer("mallory", ["other-tenant-key"], [], "other"),
];

/** The test's JWKS server is on 127.0.0.1: allowed here, as `--allow-fetch 127.0.0.0/8` would. */
const LOCAL_FETCH = new UrlGuard({ allow: ["127.0.0.0/8"] });

function table(
  routes: Array<Partial<Route> & { host: string }>,
  previous?: RouteTable,
  fetching: { guard?: UrlGuard; jwksDir?: string } = { guard: LOCAL_FETCH, jwksDir: dir },
): RouteTable {
  const objects: RouteObjects = {
    services: [testService("default", "shop", "web", routes)],
    instances: [testInstance("w", { app: "shop", service: "web" }, "local", upstream.port)],
    nodes: [testNode("local", "127.0.0.1")],
    consumers: CONSUMERS(),
  };
  return buildRouteTable(objects, 1, {
    previous,
    logger: silentLogger,
    jwks: { cooldownMs: 1000 },
    ...fetching,
  });
}

function echoed(r: { body: string }): { url: string; headers: Record<string, string> } {
  return JSON.parse(r.body);
}

const hs256 = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(HS_SECRET));
const rs256 = (key: CryptoKey, claims: Record<string, unknown>, kid?: string) =>
  new SignJWT(claims).setProtectedHeader(kid ? { alg: "RS256", kid } : { alg: "RS256" }).sign(key);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const inAMinute = () => Math.floor(Date.now() / 1000) + 60;

test("API keys: the right key passes as its consumer; a missing or wrong one is 401", async () => {
  proxy.table = table([
    { host: "shop.test", auth: { apiKey: { header: "x-api-key", query: "apikey", hideCredentials: true } } },
    { host: "open.test" },
  ]);
  const ok = await request(port, "shop.test", "/items?apikey=x&page=2", {
    headers: { "X-API-Key": "alice-key-1", "x-consumer-name": "root" },
  });
  assert.equal(ok.status, 200);
  const seen = echoed(ok);
  assert.equal(seen.headers["x-consumer-name"], "alice", "the client's X-Consumer-Name is replaced");
  assert.equal(seen.headers["x-api-key"], undefined, "hideCredentials strips the key");
  assert.equal(seen.url, "/items?page=2", "…and the query parameter");

  const byQuery = await request(port, "shop.test", "/items?apikey=bob-key-1");
  assert.equal(byQuery.status, 200);
  assert.equal(echoed(byQuery).headers["x-consumer-name"], "bob");

  const missing = await request(port, "shop.test", "/items");
  assert.equal(missing.status, 401);
  assert.equal(JSON.parse(missing.body).code, "unauthorized");
  assert.match(JSON.parse(missing.body).message, /x-api-key header or the apikey query parameter/);
  assert.equal(missing.headers["www-authenticate"], 'ApiKey realm="herd", header="x-api-key"');

  const wrong = await request(port, "shop.test", "/items", { headers: { "x-api-key": "alice-key-2" } });
  assert.equal(wrong.status, 401);
  assert.equal(JSON.parse(wrong.body).message, "unknown API key");
  const otherTenant = await request(port, "shop.test", "/", { headers: { "x-api-key": "other-tenant-key" } });
  assert.equal(otherTenant.status, 401, "consumers belong to one tenant");

  const open = await request(port, "open.test", "/", { headers: { "x-consumer-name": "root" } });
  assert.equal(open.status, 200);
  assert.equal(echoed(open).headers["x-consumer-name"], undefined, "stripped on open routes too");
  assert.equal(upstream.hits, 3, "refused requests never reach the upstream");
});

test("a key found once is looked up without hashing; a key removed from its consumer fails with the next table", async () => {
  const routes = [{ host: "shop.test", auth: { apiKey: { header: "x-api-key", hideCredentials: false } } }];
  const first = table(routes);
  proxy.table = first;
  for (let i = 0; i < 3; i++) {
    const r = await request(port, "shop.test", "/", { headers: { "x-api-key": "alice-key-1" } });
    assert.equal(r.status, 200);
    assert.equal(echoed(r).headers["x-consumer-name"], "alice");
  }
  const wrong = await request(port, "shop.test", "/", { headers: { "x-api-key": "alice-key-9" } });
  assert.equal(wrong.status, 401);
  // alice's key is revoked: the next table is built without it, and what the last one remembered goes with it.
  proxy.table = buildRouteTable(
    {
      services: [testService("default", "shop", "web", routes)],
      instances: [testInstance("w", { app: "shop", service: "web" }, "local", upstream.port)],
      nodes: [testNode("local", "127.0.0.1")],
      consumers: [testConsumer("alice", ["alice-key-2"], [])],
    },
    2,
    { previous: first, logger: silentLogger },
  );
  const revoked = await request(port, "shop.test", "/", { headers: { "x-api-key": "alice-key-1" } });
  assert.equal(revoked.status, 401);
  assert.equal(JSON.parse(revoked.body).message, "unknown API key");
  const rotated = await request(port, "shop.test", "/", { headers: { "x-api-key": "alice-key-2" } });
  assert.equal(rotated.status, 200);
});

test("a WebSocket upgrade on an auth route needs the credential too, and gets X-Consumer-Name", async () => {
  proxy.table = table([
    { host: "shop.test", auth: { apiKey: { header: "x-api-key", query: "apikey", hideCredentials: true } } },
  ]);
  const r = await request(port, "shop.test", "/socket", {
    headers: { connection: "Upgrade", upgrade: "websocket" },
  });
  assert.equal(r.status, 401);
  assert.match(String(r.headers["www-authenticate"]), /^ApiKey/);

  // The upstream takes the upgrade and reports what it was sent.
  let seen: { url?: string; consumer?: unknown; key?: unknown } = {};
  const onUpgrade = (req: http.IncomingMessage, socket: Socket) => {
    seen = { url: req.url, consumer: req.headers["x-consumer-name"], key: req.headers["x-api-key"] };
    socket.end("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  };
  upstream.server.on("upgrade", onUpgrade);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({
        host: "127.0.0.1",
        port,
        path: "/socket?apikey=alice-key-1&v=1",
        headers: {
          host: "shop.test",
          connection: "Upgrade",
          upgrade: "websocket",
          "x-consumer-name": "root",
        },
        agent: false,
      });
      req.on("upgrade", (res, socket) => {
        socket.destroy();
        resolve(res.statusCode ?? 0);
      });
      req.on("response", (res) => resolve(res.statusCode ?? 0));
      req.on("error", reject);
      req.end();
    });
    assert.equal(status, 101);
    assert.deepEqual(seen, { url: "/socket?v=1", consumer: "alice", key: undefined });
  } finally {
    upstream.server.off("upgrade", onUpgrade);
  }
});

test("an aggregation route checks the credential once and tells every part the consumer", async () => {
  proxy.table = table([
    {
      host: "agg.test",
      auth: { apiKey: { header: "x-api-key", hideCredentials: false } },
      aggregate: {
        headers: [],
        parts: [{ name: "me", service: "web", path: "/me", query: false, timeoutMs: 2000 }],
      },
    },
  ]);
  assert.equal((await request(port, "agg.test", "/")).status, 401);
  const r = await request(port, "agg.test", "/", {
    headers: { "x-api-key": "bob-key-1", "x-consumer-name": "x" },
  });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).me.headers["x-consumer-name"], "bob");
});

test("consumers' JWT credentials: HS256 and RS256 tokens map to their consumer", async () => {
  proxy.table = table([{ host: "shop.test", auth: { jwt: { claim: "sub", hideCredentials: false } } }]);
  const alice = await request(port, "shop.test", "/", {
    headers: bearer(await hs256({ iss: "alice-issuer", exp: inAMinute() })),
  });
  assert.equal(alice.status, 200);
  assert.equal(echoed(alice).headers["x-consumer-name"], "alice");
  assert.ok(echoed(alice).headers.authorization, "Authorization is forwarded unless hidden");

  const bob = await request(port, "shop.test", "/", {
    headers: bearer(await rs256(idp.consumerRsa, { iss: "bob-issuer", sub: "ignored" })),
  });
  assert.equal(bob.status, 200);
  assert.equal(echoed(bob).headers["x-consumer-name"], "bob", "the credential's consumer, not the sub");

  // Signed with the wrong secret, or with another algorithm than the credential's.
  const forged = await new SignJWT({ iss: "alice-issuer" })
    .setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode("not-the-secret-not-the-secret-xx"));
  const r1 = await request(port, "shop.test", "/", { headers: bearer(forged) });
  assert.equal(r1.status, 401);
  assert.match(JSON.parse(r1.body).message, /signature does not verify/);
  assert.match(String(r1.headers["www-authenticate"]), /^Bearer realm="herd", error="invalid_token"/);
  const r2 = await request(port, "shop.test", "/", {
    headers: bearer(await rs256(idp.consumerRsa, { iss: "alice-issuer" })),
  });
  assert.equal(r2.status, 401);
  assert.match(JSON.parse(r2.body).message, /signed with RS256, the credential alice-issuer takes HS256/);

  const unknown = await request(port, "shop.test", "/", { headers: bearer(await hs256({ iss: "nobody" })) });
  assert.equal(unknown.status, 401);
  assert.match(JSON.parse(unknown.body).message, /no JWT credential with key nobody/);
  const garbage = await request(port, "shop.test", "/", { headers: bearer("not.a-token") });
  assert.equal(garbage.status, 401);
  // An unsigned token ("alg": "none") naming a real credential.
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const unsigned = `${part({ alg: "none" })}.${part({ iss: "alice-issuer" })}.`;
  const r3 = await request(port, "shop.test", "/", { headers: bearer(unsigned) });
  assert.equal(r3.status, 401);
  assert.match(JSON.parse(r3.body).message, /signed with none/);
  const none = await request(port, "shop.test", "/");
  assert.equal(none.status, 401);
  assert.equal(none.headers["www-authenticate"], 'Bearer realm="herd"');
});

test("an expired token is 401 and says so", async () => {
  proxy.table = table([{ host: "shop.test", auth: { jwt: { claim: "sub", hideCredentials: true } } }]);
  const expired = await hs256({ iss: "alice-issuer", exp: Math.floor(Date.now() / 1000) - 60 });
  const r = await request(port, "shop.test", "/", { headers: bearer(expired) });
  assert.equal(r.status, 401);
  assert.match(JSON.parse(r.body).message, /^the token expired at \d{4}-/);
  assert.match(String(r.headers["www-authenticate"]), /error_description="the token expired at/);
  const early = await hs256({ iss: "alice-issuer", nbf: inAMinute() });
  assert.match(
    JSON.parse((await request(port, "shop.test", "/", { headers: bearer(early) })).body).message,
    /not valid before/,
  );
});

test("JWKS from a file: the claim names the consumer; issuer and audience are checked", async () => {
  proxy.table = table([
    {
      host: "shop.test",
      auth: {
        jwt: {
          jwks: { file: jwksFile },
          issuer: "https://idp.test",
          audience: "shop",
          claim: "sub",
          hideCredentials: true,
        },
      },
    },
  ]);
  const claims = { iss: "https://idp.test", aud: "shop", sub: "user-42", exp: inAMinute() };
  const ok = await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.a, claims, "a")) });
  assert.equal(ok.status, 200);
  assert.equal(echoed(ok).headers["x-consumer-name"], "user-42");
  assert.equal(echoed(ok).headers.authorization, undefined, "hideCredentials strips Authorization");
  // A token without a kid uses the set's only key.
  assert.equal(
    (await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.a, claims)) })).status,
    200,
  );

  const cases: Array<[string, Promise<string>, RegExp]> = [
    ["wrong issuer", rs256(idp.a, { ...claims, iss: "https://evil.test" }, "a"), /issuer is not/],
    ["wrong audience", rs256(idp.a, { ...claims, aud: "other" }, "a"), /not for audience shop/],
    ["key not in the set", rs256(idp.b, claims, "b"), /no key with kid b/],
    ["signed by another key", rs256(idp.b, claims, "a"), /signature does not verify/],
    ["HS256 token", hs256({ ...claims }), /must be RS256/],
  ];
  for (const [what, token, message] of cases) {
    const r = await request(port, "shop.test", "/", { headers: bearer(await token) });
    assert.equal(r.status, 401, what);
    assert.match(JSON.parse(r.body).message, message, what);
  }
  // Consumers' own credentials work on JWKS routes too.
  const alice = await request(port, "shop.test", "/", {
    headers: bearer(await hs256({ iss: "alice-issuer", aud: "shop" })),
  });
  assert.equal(echoed(alice).headers["x-consumer-name"], "alice");
});

test("a missing JWKS file is a table problem, not a crash", () => {
  const t = table([
    {
      host: "shop.test",
      auth: { jwt: { jwks: { file: join(dir, "nope.json") }, claim: "sub", hideCredentials: false } },
    },
  ]);
  assert.ok(t.problems.some((p) => p.includes("nope.json")));
});

test("JWKS from a URL: fetched by the gateway, a new kid refetches it (at most every 30 s)", async () => {
  const spec = { jwt: { jwks: { url: jwksUrl }, claim: "sub", hideCredentials: false } };
  const first = table([{ host: "shop.test", auth: spec }]);
  proxy.table = first;
  const claims = { sub: "user-7", exp: inAMinute() };
  const ok = await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.a, claims, "a")) });
  assert.equal(ok.status, 200);
  assert.equal(echoed(ok).headers["x-consumer-name"], "user-7");
  assert.equal(served.fetches, 1);

  // A rebuilt table keeps the cache: no new fetch.
  proxy.table = table([{ host: "shop.test", auth: spec }], first);
  assert.equal(
    (await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.a, claims, "a")) })).status,
    200,
  );
  assert.equal(served.fetches, 1);

  // The provider rotates to key b. Right after a fetch, an unknown kid is refused without asking
  // again (the cooldown, 30 s by default, 1 s here)…
  served.keys = [rotatedKey];
  const tooSoon = await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.b, claims, "b")) });
  assert.equal(tooSoon.status, 401);
  assert.match(JSON.parse(tooSoon.body).message, /no key with kid b/);
  assert.equal(served.fetches, 1);
  // …after it, the first token with kid b makes the gateway refetch, and passes.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const rotated = await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.b, claims, "b")) });
  assert.equal(rotated.status, 200);
  assert.equal(echoed(rotated).headers["x-consumer-name"], "user-7");
  assert.equal(served.fetches, 2);
  const retired = await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.a, claims, "a")) });
  assert.equal(retired.status, 401, "the retired key is gone");
  assert.equal(served.fetches, 2);
});

test("rateLimit per consumer: one bucket each; requests without a consumer are limited per address", async () => {
  const rateLimit = { rate: 0.001, burst: 2, per: "consumer" as const };
  proxy.table = table([
    { host: "shop.test", rateLimit, auth: { apiKey: { header: "x-api-key", hideCredentials: false } } },
    { host: "open.test", rateLimit },
  ]);
  const as = (key: string) => request(port, "shop.test", "/", { headers: { "x-api-key": key } });
  assert.deepEqual(
    [(await as("alice-key-1")).status, (await as("alice-key-1")).status, (await as("alice-key-1")).status],
    [200, 200, 429],
  );
  assert.deepEqual(
    [(await as("bob-key-1")).status, (await as("bob-key-1")).status],
    [200, 200],
    "bob's own bucket",
  );
  assert.equal((await as("bob-key-1")).status, 429);
  const open = () => request(port, "open.test", "/").then((r) => r.status);
  assert.deepEqual([await open(), await open(), await open()], [200, 200, 429]);
});

test("JWKS files: only inside the JWKS directory; a problem never quotes the file", () => {
  const jwt = (file: string) => ({ jwt: { jwks: { file }, claim: "sub", hideCredentials: false } });
  const outside = mkdtempSync(join(tmpdir(), "herd-auth-outside-"));
  try {
    const secret = join(outside, "secret.json");
    writeFileSync(secret, "TOP-SECRET-LINE not json");
    const problemsOf = (file: string, jwksDir: string | null = dir) =>
      table([{ host: "shop.test", auth: jwt(file) }], undefined, {
        guard: LOCAL_FETCH,
        jwksDir: jwksDir ?? undefined,
      }).problems;

    const away = problemsOf(secret);
    assert.ok(
      away.some((p) => /outside the gateway's JWKS directory/.test(p)),
      away.join("; "),
    );
    // A link inside the directory to a file outside it is outside too.
    const link = join(dir, "link.json");
    symlinkSync(secret, link);
    const linked = problemsOf(link);
    assert.ok(
      linked.some((p) => /link\.json.*outside/.test(p)),
      linked.join("; "),
    );
    assert.ok(problemsOf(join(dir, "..", "x", "jwks.json")).some((p) => /cannot be read|outside/.test(p)));
    // No directory configured: no file at all.
    assert.ok(problemsOf(jwksFile, null).some((p) => /--jwks-dir/.test(p)));
    // Inside, but not JSON: said, and the text is not repeated.
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "TOP-SECRET-LINE not json");
    const broken = problemsOf(bad);
    assert.ok(
      broken.some((p) => /bad\.json.*not JSON/.test(p)),
      broken.join("; "),
    );
    for (const p of [...away, ...linked, ...broken]) assert.doesNotMatch(p, /TOP-SECRET/);
  } finally {
    rmSync(outside, { recursive: true, force: true });
  }
});

test("a JWKS URL on loopback is not fetched unless allowed", async () => {
  const spec = { jwt: { jwks: { url: jwksUrl }, claim: "sub", hideCredentials: false } };
  const fetchesBefore = served.fetches;
  proxy.table = table([{ host: "shop.test", auth: spec }], undefined, {
    guard: new UrlGuard(),
    jwksDir: dir,
  });
  const claims = { sub: "user-7", exp: inAMinute() };
  const r = await request(port, "shop.test", "/", { headers: bearer(await rs256(idp.a, claims, "a")) });
  assert.equal(r.status, 401);
  assert.equal(served.fetches, fetchesBefore, "the JWKS server was never asked");
  // The refusal is logged with its reason.
  const lines: string[] = [];
  const logger = createLogger("test", "warn", (line) => lines.push(line));
  const remote = new RemoteJwks(jwksUrl, logger, {}, new UrlGuard());
  await remote.key("a", Date.now());
  assert.ok(
    lines.some((l) => /127\.0\.0\.1 is a loopback address.*--allow-fetch/.test(l)),
    lines.join("\n"),
  );
  assert.equal(served.fetches, fetchesBefore);
});
