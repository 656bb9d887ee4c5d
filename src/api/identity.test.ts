// Identities over a real socket: users, roles per tenant, tokens (prefix,
// expiry, revocation, last use), service accounts, the tenant from the token,
// 401 rate limiting and the audit trail.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { checkHostsOwned } from "../controllers/route-owners.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Token } from "../model/identity.ts";
import type { App, Service, Tenant } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-identity-"));
const tokens: Record<string, string> = {};

const call = (method: string, path: string, body?: unknown, who?: string) =>
  apiCall(server, method, path, body, { token: who === undefined ? server.adminToken : tokens[who] });

/** Makes a user with a role in a tenant and a token for it. */
async function user(name: string, roles: Record<string, string>): Promise<void> {
  assert.equal((await call("POST", "/users", { name })).status, 201);
  for (const [tenant, role] of Object.entries(roles)) {
    assert.equal((await call("PUT", `/tenants/${tenant}/members/${name}`, { role })).status, 200);
  }
  const t = await call("POST", "/tokens", { name: `${name}'s laptop`, user: name });
  assert.equal(t.status, 201);
  tokens[name] = t.body.token;
}

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  server.controllers.stop();
  for (const name of ["a", "b"]) assert.equal((await call("POST", "/tenants", { name })).status, 201);
  await user("alice", { a: "owner" });
  await user("bob", { a: "viewer" });
  await user("dave", { a: "deployer" });
  await user("carol", { a: "viewer", b: "viewer" });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("tokens are prefixed by kind, stored hashed, listed without secrets", async () => {
  assert.match(tokens.alice, /^herd_pat_[0-9a-f]{8}_/);
  const stored = (await server.store.list<Token>("token")).items;
  assert.ok(stored.every((o) => /^[0-9a-f]{64}$/.test(o.key)));
  assert.ok(!JSON.stringify(stored).includes(tokens.alice.slice(18)), "the secret is not stored");
  const mine = await call("GET", "/tokens", undefined, "alice");
  assert.equal(mine.status, 200);
  assert.deepEqual(
    mine.body.items.map((t: Token) => [t.name, t.user]),
    [["alice's laptop", "alice"]],
  );
  assert.ok(!JSON.stringify(mine.body).includes("herd_pat_"), "no secret in the list");
  assert.equal((await call("GET", "/tokens?user=alice", undefined, "bob")).status, 403);
  assert.equal((await call("POST", "/tokens", { name: "x", user: "alice" }, "bob")).status, 403);
});

test("the tenant comes from the token; naming another is a 403, naming none with two tenants a 400", async () => {
  await call("POST", "/apps?tenant=a", { name: "shop" });
  await call("POST", "/apps?tenant=b", { name: "other" });
  const apps = await call("GET", "/apps", undefined, "alice");
  assert.deepEqual(
    apps.body.items.map((x: App) => x.name),
    ["shop"],
  );
  const denied = await call("GET", "/apps?tenant=b", undefined, "alice");
  assert.equal(denied.status, 403);
  assert.match(denied.body.message, /user alice has no role in tenant b/);
  const which = await call("GET", "/apps", undefined, "carol");
  assert.equal(which.status, 400);
  assert.match(which.body.message, /carol is a member of a, b/);
  assert.equal((await call("GET", "/apps?tenant=b", undefined, "carol")).body.items[0].name, "other");
  // Only an admin learns that a tenant does not exist.
  assert.equal((await call("GET", "/apps?tenant=nope")).status, 404);
  assert.equal((await call("GET", "/apps?tenant=nope", undefined, "alice")).status, 403);
  assert.equal((await call("GET", "/apps?tenant=NOPE!")).status, 400);
});

test("roles: a viewer reads and cannot write; a deployer cannot manage members; platform routes are for admins", async () => {
  assert.equal((await call("GET", "/apps/shop", undefined, "bob")).status, 200);
  const scale = await call("POST", "/apps/shop/scale", { services: { web: 2 } }, "bob");
  assert.equal(scale.status, 403);
  assert.match(scale.body.message, /bob is a viewer in tenant a: apps:write needs the deployer role or more/);
  assert.equal((await call("POST", "/apps", { name: "more" }, "dave")).status, 201);
  assert.equal((await call("PUT", "/tenants/a/members/bob", { role: "owner" }, "dave")).status, 403);
  assert.equal((await call("GET", "/tenants/a/members", undefined, "alice")).body.items.length, 4);
  for (const [method, path] of [
    ["GET", "/nodes"],
    ["GET", "/snapshot"],
    ["GET", "/users"],
    ["PUT", "/tenants/a/quota"],
    ["POST", "/nodes/n1/heartbeat"],
  ]) {
    const body = method === "GET" ? undefined : {};
    assert.equal((await call(method, path, body, "alice")).status, 403, `${method} ${path}`);
  }
  const me = await call("GET", "/whoami", undefined, "alice");
  assert.deepEqual(me.body.tenants, [{ tenant: "a", role: "owner" }]);
});

test("a service account acts in its tenant with its role; its owner manages its tokens", async () => {
  const sa = await call("POST", "/tenants/a/service-accounts", { name: "ci", role: "deployer" }, "alice");
  assert.equal(sa.status, 201);
  const t = await call("POST", "/tokens", { name: "ci token", user: "ci", expiresIn: "30d" }, "alice");
  assert.equal(t.status, 201);
  assert.ok(Date.parse(t.body.expiresAt) > Date.now() + 29 * 86400_000);
  tokens.ci = t.body.token;
  assert.equal((await call("POST", "/apps", { name: "built-by-ci" }, "ci")).status, 201);
  assert.equal((await call("GET", "/apps?tenant=b", undefined, "ci")).status, 403);
  assert.equal((await call("POST", "/tokens", { name: "x", user: "ci" }, "bob")).status, 403);
  // Removing it from the tenant deletes it and revokes its tokens.
  assert.equal((await call("DELETE", "/tenants/a/members/ci", undefined, "alice")).status, 200);
  assert.equal((await call("GET", "/apps", undefined, "ci")).status, 401);
});

test("a revoked token stops at once; an expired one is refused", async () => {
  const t = await call("POST", "/tokens", { name: "short", user: "dave" }, "dave");
  tokens.short = t.body.token;
  assert.equal((await call("GET", "/apps", undefined, "short")).status, 200);
  assert.equal((await call("DELETE", `/tokens/${t.body.id}`, undefined, "dave")).status, 200);
  const revoked = await call("GET", "/apps", undefined, "short");
  assert.equal(revoked.status, 401);
  assert.match(revoked.body.message, /revoked/);
  const e = await call("POST", "/tokens", { name: "brief", user: "dave", expiresIn: "1ms" }, "dave");
  tokens.brief = e.body.token;
  await new Promise((r) => setTimeout(r, 5));
  const expired = await call("GET", "/apps", undefined, "brief");
  assert.equal(expired.status, 401);
  assert.match(expired.body.message, /expired/);
  // Someone else's token is not even found.
  assert.equal((await call("DELETE", `/tokens/${e.body.id}`, undefined, "bob")).status, 404);
});

test("a token's last use is recorded", async () => {
  await call("GET", "/apps", undefined, "bob");
  await new Promise((r) => setTimeout(r, 50));
  const list = await call("GET", "/tokens", undefined, "bob");
  assert.ok(list.body.items[0].lastUsedAt, "lastUsedAt set");
});

test("domains: one tenant each, no overlap", async () => {
  assert.equal((await call("PUT", "/tenants/a/domains", { domains: ["shop.example.com"] })).status, 200);
  const overlap = await call("PUT", "/tenants/b/domains", { domains: ["eu.shop.example.com"] });
  assert.equal(overlap.status, 409);
  assert.match(overlap.body.message, /belongs to tenant a/);
  assert.equal((await call("PUT", "/tenants/b/domains", { domains: ["no_underscores.com"] })).status, 400);
  assert.equal((await call("PUT", "/tenants/a/domains", { domains: [] }, "alice")).status, 403);
});

test("the audit trail records writes, refused ones too, and owners see only their tenant's", async () => {
  const mine = await call("GET", "/audit?actor=bob", undefined, "alice");
  assert.equal(mine.status, 200);
  const refused = mine.body.items.find((e: { route: string }) => e.route === "POST /api/v1/apps/:app/scale");
  assert.ok(refused, "bob's refused scale is recorded");
  assert.equal(refused.status, 403);
  assert.equal(refused.tenant, "a");
  assert.equal(refused.app, "shop");
  assert.match(refused.message, /viewer/);
  assert.ok(refused.address);
  const all = await call("GET", "/audit?limit=1000", undefined, "alice");
  assert.ok(all.body.items.every((e: { tenant?: string }) => e.tenant === "a"));
  assert.ok(!all.body.items.some((e: { path: string }) => e.path.includes("/tenants/b")));
  const quota = await call("GET", "/audit?limit=1000", undefined, "alice");
  assert.ok(
    quota.body.items.some((e: { path: string }) => e.path === "/api/v1/tenants/a/domains"),
    "an admin's change to tenant a is in a's trail",
  );
  const admin = await call("GET", "/audit?limit=1000");
  assert.ok(admin.body.items.some((e: { path: string }) => e.path === "/api/v1/tenants/b/domains"));
  assert.equal((await call("GET", "/audit", undefined, "bob")).status, 403);
  const created = await call("GET", "/audit?verb=create&app=more", undefined, "alice");
  assert.deepEqual(
    created.body.items.map((e: { actor: string }) => e.actor),
    [],
    "app is a path parameter: POST /apps names it in the body",
  );
});

test("hosts belong to tenants: another tenant's domain, app host or used host is a 409", async () => {
  const store = new MemoryStore();
  const now = new Date().toISOString();
  await store.put<Tenant>("tenant", "a", { name: "a", createdAt: now, domains: ["shop.example.com"] });
  await store.put<Tenant>("tenant", "b", { name: "b", createdAt: now });
  await store.put<App>("app", "a/hello", {
    tenant: "a",
    name: "hello",
    createdAt: now,
    release: null,
    latestVersion: 1,
  });
  await store.put("service", "a/hello/web", {
    tenant: "a",
    app: "hello",
    name: "web",
    spec: { routes: [{ host: "hello.test", path: "/" }] },
  } as unknown as Service);
  const check = (tenant: string, host: string) => checkHostsOwned(store, tenant, [{ host, field: "host" }]);
  await assert.rejects(
    check("b", "api.shop.example.com"),
    /under domain shop.example.com, which belongs to tenant a/,
  );
  await assert.rejects(check("b", "hello.localhost"), /belongs to app hello of another tenant/);
  await assert.rejects(check("b", "hello.test"), /already used by another tenant's routes/);
  await check("a", "api.shop.example.com");
  await check("a", "hello.test");
  await check("b", "b.localhost");
  await check("b", "free.example.org");
});

test("deploy limits per tenant: an upload over the tenant's limit is a 413, other tenants keep the server's", async () => {
  assert.equal((await call("PUT", "/tenants/a/limits", { uploadBytes: 2048 }, "alice")).status, 403);
  const set = await call("PUT", "/tenants/a/limits", { uploadBytes: 2048, unpackEntries: 100 });
  assert.equal(set.status, 200);
  assert.deepEqual(set.body.limits, { uploadBytes: 2048, unpackEntries: 100 });
  assert.equal((await call("PUT", "/tenants/a/limits", { uploadBytes: "big" })).status, 400);
  const big = Buffer.alloc(4096);
  const res = await apiCall(server, "POST", "/apps/shop/deploys", big, {
    token: tokens.alice,
    contentType: "application/gzip",
  });
  assert.equal(res.status, 413);
  assert.match(res.body.message, /the limit is 2048 bytes/);
  assert.equal((await call("PUT", "/tenants/a/limits", {})).body.limits, undefined);
});

test("a platform admin lets a tenant's containers run as their image's user, and takes it back", async () => {
  assert.equal((await call("PUT", "/tenants/a/image-user", { allowed: true }, "alice")).status, 403);
  assert.equal((await call("PUT", "/tenants/a/image-user", { allowed: "yes" })).status, 400);
  assert.equal((await call("PUT", "/tenants/a/image-user", {})).status, 400);
  const set = await call("PUT", "/tenants/a/image-user", { allowed: true });
  assert.equal(set.status, 200);
  assert.equal(set.body.allowImageUser, true);
  assert.equal((await call("GET", "/tenants/a")).body.allowImageUser, true);
  assert.equal(
    (await call("PUT", "/tenants/a/image-user", { allowed: false })).body.allowImageUser,
    undefined,
  );
  assert.equal((await call("GET", "/tenants/a")).body.allowImageUser, undefined);
});

test("too many failed sign-ins from one address are a 429", async () => {
  let last = 0;
  for (let i = 0; i < 30; i++) {
    last = (await apiCall(server, "GET", "/apps", undefined, { token: `herd_pat_nope_${i}` })).status;
    if (last === 429) break;
  }
  assert.equal(last, 429);
  // A token the server knows and has cached still gets in.
  assert.equal((await call("GET", "/apps", undefined, "alice")).status, 200);
});
