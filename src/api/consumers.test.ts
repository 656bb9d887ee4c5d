// Consumers through the real API: create, list, show, delete; API keys shown
// once and stored hashed; JWT credentials validated; 400 naming the field,
// 404, 409; and what a gateway gets from the snapshot opens a route.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { buildRouteTable } from "../gateway/route-table.ts";
import { testService } from "../gateway/testing.ts";
import type { Consumer } from "../model/objects.ts";
import type { StoredObject } from "../store/store.ts";
import { hashToken } from "./auth.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-consumers-"));

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown) => apiCall(server, method, path, body);

test("consumers: create, list, show, 409 on a taken name, 400 naming the field, delete", async () => {
  const created = await call("POST", "/consumers", { name: "alice" });
  assert.equal(created.status, 201);
  assert.deepEqual(
    { ...created.body, createdAt: "" },
    {
      tenant: "default",
      name: "alice",
      createdAt: "",
      keys: [],
      jwt: [],
    },
  );
  const dup = await call("POST", "/consumers", { name: "alice" });
  assert.equal(dup.status, 409);
  assert.match(dup.body.message, /consumer alice already exists/);
  const bad = await call("POST", "/consumers", { name: "Alice Smith" });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.details[0].field, "body.name");
  assert.equal(
    (await call("POST", "/consumers", { name: "bob", role: "x" })).body.details[0].field,
    "body.role",
  );
  assert.equal((await call("POST", "/consumers", {})).body.details[0].field, "body.name");

  await call("POST", "/consumers", { name: "bob" });
  assert.deepEqual(
    (await call("GET", "/consumers")).body.items.map((c: { name: string }) => c.name),
    ["alice", "bob"],
  );
  assert.equal((await call("POST", "/tenants", { name: "other" })).status, 201);
  assert.equal((await call("GET", "/consumers?tenant=other")).body.items.length, 0, "per tenant");
  assert.equal((await call("GET", "/consumers/bob")).body.name, "bob");
  assert.equal((await call("DELETE", "/consumers/bob")).status, 200);
  const gone = await call("GET", "/consumers/bob");
  assert.equal(gone.status, 404);
  assert.match(gone.body.message, /consumer bob does not exist/);
  assert.equal((await call("DELETE", "/consumers/bob")).status, 404);
});

test("an API key is shown once and stored as its sha256; a gateway built from the snapshot accepts it", async () => {
  await call("POST", "/consumers", { name: "shopper" });
  const added = await call("POST", "/consumers/shopper/keys");
  assert.equal(added.status, 201);
  const key: string = added.body.key;
  assert.match(key, /^hk_[A-Za-z0-9_-]{32}$/);
  assert.equal((await call("POST", "/consumers/nobody/keys")).status, 404);

  const shown = (await call("GET", "/consumers/shopper")).body;
  assert.equal(shown.keys.length, 1);
  assert.equal(shown.keys[0].id, added.body.id);
  assert.equal(shown.keys[0].hint, `${key.slice(0, 7)}…`);
  assert.ok(!JSON.stringify(shown).includes(key), "the key is never shown again");
  assert.ok(!JSON.stringify(shown).includes(hashToken(key)), "nor its hash");
  const stored = await server.store.get<Consumer>("consumer", "default/shopper");
  assert.equal(stored?.value.keys[0].hash, hashToken(key));
  assert.ok(!JSON.stringify(stored?.value).includes(key), "the store holds only the hash");

  // What a gateway follows: the snapshot's consumers, built into a table with an API-key route.
  const snapshot = (await call("GET", "/snapshot?kinds=consumer")).body as {
    items: StoredObject<Consumer>[];
  };
  const table = buildRouteTable(
    {
      services: [
        testService("default", "shop", "web", [
          { host: "shop.test", auth: { apiKey: { header: "x-api-key", hideCredentials: false } } },
        ]),
      ],
      instances: [],
      nodes: [],
      consumers: snapshot.items.map((o) => o.value),
    },
    1,
  );
  const auth = table.route("shop.test", "/")?.auth;
  assert.ok(auth);
  const withKey = (k: string) => ({ rawHeaders: ["X-Api-Key", k] }) as unknown as IncomingMessage;
  assert.equal(auth.check(withKey(key), "/", Date.now()), "shopper");
  assert.notEqual(auth.check(withKey(`${key}x`), "/", Date.now()), "shopper");

  const removed = await call("DELETE", `/consumers/shopper/keys/${added.body.id}`);
  assert.equal(removed.status, 200);
  assert.equal(removed.body.keys.length, 0);
  assert.equal((await call("DELETE", `/consumers/shopper/keys/${added.body.id}`)).status, 404);
});

test("JWT credentials: HS256 secret generated and shown once, RS256 needs an RSA PEM, keys unique", async () => {
  await call("POST", "/consumers", { name: "issuer" });
  await call("POST", "/consumers", { name: "other" });
  const hs = await call("POST", "/consumers/issuer/jwt", { key: "issuer-app" });
  assert.equal(hs.status, 201);
  assert.equal(hs.body.algorithm, "HS256");
  assert.equal(hs.body.key, "issuer-app");
  assert.ok(hs.body.secret.length >= 32, "a generated secret");
  const shown = JSON.stringify((await call("GET", "/consumers/issuer")).body);
  assert.ok(shown.includes("issuer-app"));
  assert.ok(!shown.includes(hs.body.secret), "the secret is not shown again");

  const given = await call("POST", "/consumers/issuer/jwt", { secret: "s".repeat(40) });
  assert.equal(given.status, 201);
  assert.equal(given.body.secret, undefined, "a secret the caller gave is not echoed");
  assert.match(given.body.key, /^[0-9a-z]{24}$/, "a generated key");

  const taken = await call("POST", "/consumers/other/jwt", { key: "issuer-app" });
  assert.equal(taken.status, 409);
  assert.match(taken.body.message, /taken by consumer issuer/);

  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const rs = await call("POST", "/consumers/other/jwt", {
    key: "other-rs",
    algorithm: "RS256",
    publicKey: pem,
  });
  assert.equal(rs.status, 201);
  assert.equal(rs.body.secret, undefined);

  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({
    type: "spki",
    format: "pem",
  });
  const faults: Array<[unknown, string]> = [
    [{ algorithm: "RS256" }, "body.publicKey"],
    [{ algorithm: "RS256", publicKey: "not a key" }, "body.publicKey"],
    [{ algorithm: "RS256", publicKey: ec.toString() }, "body.publicKey"],
    [{ algorithm: "RS256", publicKey: pem, secret: "s".repeat(40) }, "body.secret"],
    [{ algorithm: "HS256", publicKey: pem }, "body.publicKey"],
    [{ secret: "short" }, "body.secret"],
    [{ algorithm: "ES256" }, "body.algorithm"],
    [{ key: "has space" }, "body.key"],
  ];
  for (const [body, field] of faults) {
    const r = await call("POST", "/consumers/other/jwt", body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.body.details[0].field, field, JSON.stringify(body));
  }
  const del = await call("DELETE", `/consumers/other/jwt/${rs.body.id}`);
  assert.equal(del.body.jwt.length, 0);
});

test("the consumer routes are in the OpenAPI document", async () => {
  const { body } = await call("GET", "/openapi.json");
  for (const path of [
    "/api/v1/consumers",
    "/api/v1/consumers/{name}",
    "/api/v1/consumers/{name}/keys",
    "/api/v1/consumers/{name}/keys/{id}",
    "/api/v1/consumers/{name}/jwt",
    "/api/v1/consumers/{name}/jwt/{id}",
  ]) {
    assert.ok(body.paths[path], `${path} is documented`);
  }
  assert.ok(
    body.paths["/api/v1/consumers/{name}/jwt"].post.requestBody.content["application/json"].schema.properties
      .publicKey,
  );
});
