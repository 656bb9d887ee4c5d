// An external Open Service Broker through the real control plane: a small
// broker (node:http on 127.0.0.1, basic auth, asynchronous provisions and
// deprovisions) is registered, its catalog appears in the plans, and create,
// attach, detach and destroy go through it; the binding's credentials become
// the app's secrets and a new release carries them. The server's --allow-fetch
// allows 127.0.0.0/8 only: a broker on ::1 is refused unasked.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall } from "../api/testing.ts";
import { runCli } from "../cli/test-api.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { normalizeService } from "../model/manifest.ts";
import type { Deploy, Release } from "../model/objects.ts";
import { credentialVars, defaultVarOf } from "./broker-addons.ts";
import { PASSWORD, TestBroker, USER } from "./testing-broker.ts";

let server: RunningServer;
const broker = new TestBroker();
const dir = mkdtempSync(join(tmpdir(), "herd-brokers-"));

before(async () => {
  await new Promise<void>((r) => broker.server.listen(0, "127.0.0.1", r));
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger, allowFetch: ["127.0.0.0/8"] });
});

after(async () => {
  await server?.close();
  await new Promise((r) => broker.server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown, token?: string) =>
  apiCall(server, method, path, body, token ? { token } : {});

async function finished(app: string, id: string): Promise<Deploy> {
  const end = Date.now() + 10_000;
  for (;;) {
    const d = (await call("GET", `/apps/${app}/deploys/${id}`)).body as Deploy;
    if (d.state === "succeeded" || d.state === "failed") return d;
    if (Date.now() > end) throw new Error(`deploy ${id} did not finish: ${d.state} ${d.message}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** An app with a release (no instances), so a secret's change makes a new one. */
async function appWithRelease(app: string): Promise<void> {
  assert.equal((await call("POST", "/apps", { name: app })).status, 201);
  const d = await server.controllers.deploys.startDeploy("default", app, async () => ({
    source: "b".repeat(64),
    slug: "a".repeat(64),
    services: { web: normalizeService(app, "web", { command: "node server.js", instances: 0 }, undefined) },
    description: "test",
  }));
  assert.equal((await finished(app, d.id)).state, "succeeded");
}

async function latestRelease(app: string): Promise<Release> {
  return ((await call("GET", `/apps/${app}/releases`)).body.items as Release[])[0];
}

test("credentials become variables named after the binding's", () => {
  assert.equal(defaultVarOf("mail"), "MAIL_URL");
  assert.equal(defaultVarOf("my-db.v2"), "MY_DB_V2_URL");
  assert.deepEqual(credentialVars("MAIL_URL", { uri: "smtp://x", username: "u", port: 25, tls: { a: 1 } }), {
    MAIL_URL: "smtp://x",
    MAIL_USERNAME: "u",
    MAIL_PORT: "25",
    MAIL_TLS: '{"a":1}',
  });
  assert.deepEqual(credentialVars("Q", { host: "h", "api-key": "k", none: null }), {
    Q_HOST: "h",
    Q_API_KEY: "k",
  });
});

test("a broker is registered through the URL guard, with its password in the secret store", async () => {
  const before = broker.seen.length;
  const v6 = await call("POST", "/addon-brokers", { name: "six", url: "http://[::1]:9/" });
  assert.equal(v6.status, 403, JSON.stringify(v6.body));
  assert.match(v6.body.message, /::1 is a loopback address.*--allow-fetch/);
  assert.equal(broker.seen.length, before, "a refused broker is never asked");

  const nobody = await call("POST", "/addon-brokers", { name: "gone", url: "http://127.0.0.1:1/" });
  assert.equal(nobody.status, 503, JSON.stringify(nobody.body));
  assert.match(nobody.body.message, /broker http:\/\/127\.0\.0\.1:1\/ did not answer GET \/v2\/catalog/);
  const wrong = await call("POST", "/addon-brokers", {
    name: "osb",
    url: broker.url,
    user: USER,
    password: "nope",
  });
  assert.equal(wrong.status, 503, JSON.stringify(wrong.body));
  assert.match(wrong.body.message, /401.*user and password/);
  const half = await call("POST", "/addon-brokers", { name: "osb", url: broker.url, user: USER });
  assert.equal(half.status, 400);
  assert.equal(half.body.details[0].field, "password");
  const inUrl = await call("POST", "/addon-brokers", { name: "osb", url: `http://a:b@127.0.0.1:1/` });
  assert.equal(inUrl.status, 400);
  assert.equal(inUrl.body.details[0].field, "url");

  const ok = await call("POST", "/addon-brokers", {
    name: "osb",
    url: broker.url,
    user: USER,
    password: PASSWORD,
  });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.deepEqual(
    ok.body.services[0].plans.map((p: { name: string }) => p.name),
    ["free", "pro", "broken"],
  );
  assert.equal((await call("POST", "/addon-brokers", { name: "osb", url: broker.url })).status, 409);
  const listed = await call("GET", "/addon-brokers");
  assert.equal(listed.body.items.length, 1);
  assert.doesNotMatch(JSON.stringify(listed.body), new RegExp(PASSWORD), "the password is never shown");
  assert.doesNotMatch(
    JSON.stringify((await server.store.list("addon_broker")).items),
    new RegExp(PASSWORD),
    "nor stored in the clear",
  );

  const plans = (await call("GET", "/addon-plans")).body.items as {
    kind: string;
    plan: string;
    source: string;
  }[];
  assert.ok(plans.some((p) => p.kind === "postgres" && p.plan === "small" && p.source === "herd"));
  assert.deepEqual(
    plans.filter((p) => p.source === "osb").map((p) => `${p.kind}/${p.plan}`),
    ["mail/free", "mail/pro", "mail/broken"],
  );

  // Only a platform admin registers brokers; a deployer sees the plans.
  assert.equal((await call("POST", "/users", { name: "dana" })).status, 201);
  assert.equal((await call("PUT", "/tenants/default/members/dana", { role: "deployer" })).status, 200);
  const dana = (await call("POST", "/tokens", { name: "dana's", user: "dana" })).body.token as string;
  assert.equal((await call("POST", "/addon-brokers", { name: "x", url: broker.url }, dana)).status, 403);
  assert.equal((await call("GET", "/addon-plans", undefined, dana)).status, 200);

  // The CLI: a second broker offering the same service makes the kind BROKER/SERVICE.
  const cli = (...argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken });
  const added = await cli(
    "addons",
    "brokers",
    "add",
    "two",
    broker.url,
    "--user",
    USER,
    "--password",
    PASSWORD,
  );
  assert.equal(added.code, 0, added.err);
  assert.match(added.out, /Broker two registered: mail \(free, pro, broken\)/);
  const shown = await cli("addons", "plans");
  assert.equal(shown.code, 0, shown.err);
  assert.match(shown.out, /osb\/mail\s+pro\s+osb\s+no limit/);
  assert.match(shown.out, /two\/mail\s+free\s+two\s+100 mails a day/);
  assert.match(shown.out, /postgres\s+small\s+herd/);
  const ambiguous = await call("POST", "/addons", { kind: "mail", name: "amb" });
  assert.equal(ambiguous.status, 400);
  assert.match(ambiguous.body.details[0].message, /osb\/mail, two\/mail/);
  assert.match(
    (await cli("addons", "brokers")).out,
    /two\s+http:\/\/127\.0\.0\.1:\d+\s+herd\s+\(all\)\s+mail/,
  );
  const removed = await cli("addons", "brokers", "remove", "two");
  assert.equal(removed.code, 0, removed.err);
  assert.doesNotMatch((await cli("addons", "brokers")).out, /^two/m);
});

test("create (asynchronous), attach, detach and destroy go through the broker", async () => {
  await appWithRelease("shop");
  const badPlan = await call("POST", "/addons", { kind: "mail", plan: "gold", app: "shop" });
  assert.equal(badPlan.status, 400);
  assert.equal(badPlan.body.details[0].field, "plan");
  assert.match(badPlan.body.details[0].message, /free, pro, broken/);
  const badKind = await call("POST", "/addons", { kind: "fax", app: "shop" });
  assert.equal(badKind.status, 400);
  assert.match(badKind.body.details[0].message, /postgres, redis, mail/);

  const created = await call("POST", "/addons", { kind: "mail", plan: "pro", app: "shop" });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.addon.name, "shop-mail");
  assert.equal(created.body.addon.broker.state, "ready");
  const instanceId = created.body.addon.broker.instanceId as string;
  const vars = ["MAIL_PASSWORD", "MAIL_PORT", "MAIL_TLS", "MAIL_URL", "MAIL_USERNAME"];
  assert.deepEqual(created.body.binding.vars, vars);

  const prov = broker.seen.find(
    (s) => s.method === "PUT" && s.path === `/v2/service_instances/${instanceId}`,
  );
  assert.ok(prov);
  assert.equal(prov.body.service_id, "svc-mail");
  assert.equal(prov.body.plan_id, "plan-pro");
  assert.ok(
    broker.seen.filter((s) => s.path.endsWith("/last_operation")).length >= 2,
    "the async provision was polled until it succeeded",
  );
  const bindingId = created.body.binding.bindingId as string;
  assert.ok(broker.bindings.has(`${instanceId}/${bindingId}`));

  // The credentials are the app's secrets, and a new release carries them.
  assert.equal(
    await server.secrets.value("default", "shop", "MAIL_URL"),
    `smtp://u-${bindingId.slice(0, 8)}:pw@mail.example:25`,
  );
  assert.equal(await server.secrets.value("default", "shop", "MAIL_PORT"), "25");
  const end = Date.now() + 10_000;
  let rel = await latestRelease("shop");
  while (rel.version < 2 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    rel = await latestRelease("shop");
  }
  assert.deepEqual(Object.keys(rel.services.web.secrets ?? {}).sort(), vars);

  // What only herd's own add-ons do is refused by name.
  const backup = await call("POST", "/addons/shop-mail/backups");
  assert.equal(backup.status, 400);
  assert.match(backup.body.message, /run by broker osb/);
  // A broker that runs add-ons stays.
  assert.equal((await call("DELETE", "/addon-brokers/osb")).status, 409);

  const info = await call("GET", "/addons/shop-mail");
  assert.equal(info.body.state, "ready");
  const shown = await runCli(["addons", "info", "shop-mail"], {
    server: server.url,
    token: server.adminToken,
  });
  assert.equal(shown.code, 0, shown.err);
  assert.match(shown.out, /shop-mail: mail, plan pro, ready \(broker osb: ready\)/);
  assert.match(shown.out, /shop\s+MAIL_PASSWORD, MAIL_PORT, MAIL_TLS, MAIL_URL, MAIL_USERNAME/);

  const detached = await call("POST", "/addons/shop-mail/detach", { app: "shop" });
  assert.equal(detached.status, 200, JSON.stringify(detached.body));
  assert.ok(!broker.bindings.has(`${instanceId}/${bindingId}`), "unbound at the broker");
  assert.ok(detached.body.deploy, "a new release without the secrets");
  await finished("shop", detached.body.deploy);
  assert.equal((await latestRelease("shop")).services.web.secrets, undefined);
  await assert.rejects(server.secrets.value("default", "shop", "MAIL_URL"));

  assert.equal((await call("DELETE", "/addons/shop-mail")).status, 400, "destroy needs the confirmation");
  const destroyed = await call("DELETE", "/addons/shop-mail?confirm=shop-mail");
  assert.equal(destroyed.status, 200, JSON.stringify(destroyed.body));
  assert.equal(destroyed.body.pending, undefined, "the deprovision was followed to its end");
  assert.ok(!broker.instances.has(instanceId), "deprovisioned at the broker");
  assert.equal((await call("GET", "/addons/shop-mail")).status, 404);
});

test("a provision nobody waits for is followed by the add-on timer; a failed one says why", async () => {
  const created = await call("POST", "/addons", { kind: "mail", plan: "pro", name: "later" });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.addon.broker.state, "provisioning");
  const end = Date.now() + 15_000;
  let state = "provisioning";
  while (state === "provisioning" && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    state = (await call("GET", "/addons/later")).body.state;
  }
  assert.equal(state, "ready");

  // A server that died between storing an add-on and asking the broker: the timer asks, same instance id.
  const orphan = {
    tenant: "default",
    name: "orphan",
    kind: "mail",
    plan: "free",
    createdAt: new Date(Date.now() - 120_000).toISOString(),
    bindings: [],
    broker: {
      name: "osb",
      serviceId: "svc-mail",
      planId: "plan-free",
      instanceId: "crash-1",
      state: "provisioning",
    },
  };
  await server.store.put("addon", "default/orphan", orphan, { expectRevision: 0 });
  const end2 = Date.now() + 15_000;
  while ((await call("GET", "/addons/orphan")).body.state === "provisioning" && Date.now() < end2)
    await new Promise((r) => setTimeout(r, 200));
  assert.equal((await call("GET", "/addons/orphan")).body.state, "ready");
  assert.ok(broker.instances.has("crash-1"), "provisioned at the broker under the id herd kept");

  await appWithRelease("blog");
  const broken = await call("POST", "/addons", {
    kind: "osb/mail",
    plan: "broken",
    app: "blog",
    name: "bad",
  });
  assert.equal(broken.status, 503, JSON.stringify(broken.body));
  assert.match(broken.body.message, /out of mailboxes/);
  const info = (await call("GET", "/addons/bad")).body;
  assert.equal(info.state, "failed");
  assert.equal(info.bindings.length, 0);

  // A broker gone for good: destroy fails naming it; --purge forgets the add-on and the app's secrets.
  const doomed = await call("POST", "/addons", { kind: "mail", plan: "free", app: "blog", name: "doomed" });
  assert.equal(doomed.status, 201, JSON.stringify(doomed.body));
  assert.equal(await server.secrets.value("default", "blog", "MAIL_PORT"), "25");
  broker.down = true;
  const refused = await call("DELETE", "/addons/doomed?confirm=doomed");
  assert.equal(refused.status, 503);
  assert.match(refused.body.message, /refused unbind \(500: the broker is down\)/);
  assert.equal((await call("GET", "/addons/doomed")).body.bindings.length, 1, "nothing changed");
  const purged = await runCli(["addons", "destroy", "doomed", "--confirm", "doomed", "--purge"], {
    server: server.url,
    token: server.adminToken,
  });
  assert.equal(purged.code, 0, purged.err);
  assert.equal((await call("GET", "/addons/doomed")).status, 404);
  await assert.rejects(server.secrets.value("default", "blog", "MAIL_PORT"));
  broker.down = false;
  assert.equal(
    (await call("DELETE", "/addons/later?confirm=later&purge=true")).status,
    200,
    "purge is for a broker's add-on, of any state",
  );

  for (const name of ["bad", "orphan"])
    assert.equal((await call("DELETE", `/addons/${name}?confirm=${name}`)).status, 200);
  assert.deepEqual(
    [...broker.instances.keys()].length,
    2,
    "every instance deprovisioned but the two purged (doomed, later)",
  );
  assert.equal((await call("DELETE", "/addon-brokers/osb")).status, 200);
  assert.deepEqual((await call("GET", "/addon-brokers")).body.items, []);
  assert.ok(
    !(await call("GET", "/addon-plans")).body.items.some((p: { source: string }) => p.source === "osb"),
  );
});
