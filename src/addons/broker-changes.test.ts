// A broker's add-on after create, through the real control plane and a real
// broker on loopback (testing-broker.ts): provision parameters checked against
// the plan's schema, plan changes (PATCH, synchronous and asynchronous, refused
// where the catalog says so), rotation of a binding's credentials (a new
// binding, a new release, the old one unbound after the rollout), what the
// add-on timer finishes after a crash, and brokers a tenant owner registers
// for its tenant only.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall } from "../api/testing.ts";
import { runCli } from "../cli/test-api.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Addon } from "../model/addon.ts";
import { normalizeService } from "../model/manifest.ts";
import type { Deploy, Release } from "../model/objects.ts";
import { PASSWORD, TestBroker, USER } from "./testing-broker.ts";

let server: RunningServer;
const broker = new TestBroker({ queue: true });
const dir = mkdtempSync(join(tmpdir(), "herd-broker-changes-"));

before(async () => {
  await broker.listen();
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger, allowFetch: ["127.0.0.0/8"] });
  const added = await call("POST", "/addon-brokers", {
    name: "osb",
    url: broker.url,
    user: USER,
    password: PASSWORD,
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
});

after(async () => {
  await server?.close();
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown, token?: string) =>
  apiCall(server, method, path, body, token ? { token } : {});
const cli = (...argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function finished(app: string, id: string): Promise<Deploy> {
  return until(`deploy ${id}`, async () => {
    const d = (await call("GET", `/apps/${app}/deploys/${id}`)).body as Deploy;
    return d.state === "succeeded" || d.state === "failed" ? d : undefined;
  });
}

async function appWithRelease(app: string, tenant = "default"): Promise<void> {
  const q = tenant === "default" ? "" : `?tenant=${tenant}`;
  assert.equal((await call("POST", `/apps${q}`, { name: app })).status, 201);
  const d = await server.controllers.deploys.startDeploy(tenant, app, async () => ({
    source: "b".repeat(64),
    slug: "a".repeat(64),
    services: { web: normalizeService(app, "web", { command: "node server.js", instances: 0 }, undefined) },
    description: "test",
  }));
  await until("the first release", async () => {
    const got = (await call("GET", `/apps/${app}/deploys/${d.id}${q}`)).body as Deploy;
    return got.state === "succeeded" ? got : undefined;
  });
}

const addonOf = async (name: string, tenant = "default") =>
  (await server.store.get<Addon>("addon", `${tenant}/${name}`))?.value as Addon;

test("provision parameters are checked against the plan's schema; a 400 names each parameter", async () => {
  const missing = await call("POST", "/addons", {
    kind: "queue",
    name: "q0",
    parameters: { size: 20, colour: "red" },
  });
  assert.equal(missing.status, 400, JSON.stringify(missing.body));
  assert.deepEqual(missing.body.details.map((d: { field: string }) => d.field).sort(), [
    "parameters.colour",
    "parameters.region",
    "parameters.size",
  ]);
  assert.match(missing.body.message, /parameters\.size must be at most 10/);
  assert.match(missing.body.message, /parameters\.region is missing/);
  const notObject = await call("POST", "/addons", { kind: "queue", name: "q0", parameters: [1] });
  assert.equal(notObject.status, 400);
  assert.match(notObject.body.details[0].field, /parameters/);
  const own = await call("POST", "/addons", { kind: "postgres", name: "pg0", parameters: { a: 1 } });
  assert.equal(own.status, 400);
  assert.equal(own.body.details[0].field, "parameters");
  assert.equal(broker.asked("PUT", "").length, 0, "nothing refused reached the broker");
  assert.equal((await call("GET", "/addons/q0")).status, 404, "nor was kept");

  // The CLI: --params FILE, then --param K=V over it (values read as JSON when they parse).
  const file = join(dir, "params.json");
  writeFileSync(file, JSON.stringify({ region: "us", size: 1 }));
  const made = await cli(
    "addons",
    "create",
    "queue",
    "--name",
    "q1",
    "--params",
    file,
    "--param",
    "size=3",
    "--param",
    "region=eu",
  );
  assert.equal(made.code, 0, made.err);
  const a = await addonOf("q1");
  assert.equal(a.broker?.state, "ready");
  assert.deepEqual(broker.instances.get(a.broker?.instanceId as string)?.parameters, {
    region: "eu",
    size: 3,
  });
  assert.deepEqual(a.broker?.parameters, { region: "eu", size: 3 }, "kept, to send a lost provision again");
  const bad = await cli("addons", "create", "queue", "--name", "q2", "--param", "size");
  assert.equal(bad.code, 2, bad.out);
  assert.match(bad.err, /--param size: give KEY=VALUE/);
  const refused = await cli("addons", "create", "queue", "--name", "q2", "--param", "region=mars");
  assert.notEqual(refused.code, 0);
  assert.match(refused.err, /parameters\.region must be one of eu, us/);

  // The plans show which take parameters and which change plan.
  const plans = (await call("GET", "/addon-plans")).body.items as {
    kind: string;
    plan: string;
    updateable: boolean;
    parameters?: unknown;
  }[];
  const small = plans.find((p) => p.kind === "queue" && p.plan === "small");
  assert.equal(small?.updateable, true);
  assert.ok(small?.parameters);
  assert.equal(plans.find((p) => p.kind === "queue" && p.plan === "fixed")?.updateable, false);
  assert.equal(plans.find((p) => p.kind === "mail" && p.plan === "pro")?.updateable, false);
});

test("a plan change goes to the broker when the catalog allows it; a failed one keeps the old plan", async () => {
  // Synchronous (200) then asynchronous (202, followed through last_operation).
  const id = (await addonOf("q1")).broker?.instanceId as string;
  const same = await call("PATCH", "/addons/q1", { plan: "small" });
  assert.equal(same.status, 400);
  assert.equal(same.body.details[0].field, "plan");
  const unknown = await call("PATCH", "/addons/q1", { plan: "huge" });
  assert.equal(unknown.status, 400);
  assert.match(unknown.body.details[0].message, /small, big, fixed, doomed/);
  const fixed = await call("PATCH", "/addons/q1", { plan: "fixed" });
  assert.equal(fixed.status, 400);
  assert.match(fixed.body.details[0].message, /not plan_updateable/);
  const badParam = await call("PATCH", "/addons/q1", { parameters: { size: 11 } });
  assert.equal(badParam.status, 400);
  assert.equal(badParam.body.details[0].field, "parameters.size");

  const moved = await cli("addons", "plan", "q1", "big");
  assert.equal(moved.code, 0, moved.err);
  assert.match(moved.out, /q1 is on plan big/);
  assert.equal(broker.instances.get(id)?.plan, "plan-big");
  const patch = broker.asked("PATCH", `/v2/service_instances/${id}`).at(-1);
  assert.deepEqual(patch?.body.previous_values, { service_id: "svc-queue", plan_id: "plan-small" });
  assert.ok(broker.asked("GET", `${id}/last_operation`).length >= 2, "the 202 was polled");
  const a = await addonOf("q1");
  assert.equal(a.plan, "big");
  assert.equal(a.broker?.planId, "plan-big");
  assert.equal(a.broker?.state, "ready");

  // Only parameters: sent with the same plan.
  const params = await call("PATCH", "/addons/q1", { parameters: { size: 7 } });
  assert.equal(params.status, 200, JSON.stringify(params.body));
  assert.equal(broker.instances.get(id)?.parameters?.size, 7);

  // The broker fails the move: 503 with its word, the add-on stays on big.
  const doomed = await call("PATCH", "/addons/q1", { plan: "doomed" });
  assert.equal(doomed.status, 503, JSON.stringify(doomed.body));
  assert.match(doomed.body.message, /no room for doomed; it stays on big/);
  assert.equal((await addonOf("q1")).plan, "big");
  assert.equal((await addonOf("q1")).broker?.state, "ready");

  // A service whose catalog has no plan_updateable: refused before the broker is asked.
  const mail = await call("POST", "/addons", { kind: "mail", plan: "free", name: "m1" });
  assert.equal(mail.status, 201);
  const before = broker.asked("PATCH", "").length;
  const nope = await call("PATCH", "/addons/m1", { plan: "pro" });
  assert.equal(nope.status, 400);
  assert.equal(nope.body.details[0].field, "plan");
  assert.equal(broker.asked("PATCH", "").length, before);

  // A broker that does not answer: the change is kept (updating) and sent again by the add-on timer.
  broker.down = true;
  const down = await call("PATCH", "/addons/q1", { plan: "small" });
  broker.down = false;
  assert.equal(down.status, 503, JSON.stringify(down.body));
  assert.match(down.body.message, /the plan change is kept and herd sends it again/);
  const kept = await addonOf("q1");
  assert.equal(kept.broker?.state, "updating");
  assert.equal(kept.broker?.update?.plan, "small");
  assert.equal(kept.broker?.update?.sent, undefined);
  assert.equal((await call("PATCH", "/addons/q1", { plan: "fixed" })).status, 409, "one change at a time");
  const since = new Date(Date.now() - 120_000).toISOString();
  await server.store.put("addon", "default/q1", {
    ...kept,
    broker: { ...kept.broker, update: { ...kept.broker?.update, since } },
  });
  await until("the timer to send the change again", async () => (await addonOf("q1")).plan === "small");
  assert.equal(broker.instances.get(id)?.plan, "plan-small");

  // A server that died after storing the change, before asking: the add-on timer sends it.
  await server.store.put("addon", "default/q1", {
    ...(await addonOf("q1")),
    broker: {
      ...(await addonOf("q1")).broker,
      state: "updating",
      update: { planId: "plan-big", plan: "big", since: new Date(Date.now() - 120_000).toISOString() },
    },
  });
  await until("the timer to finish the plan change", async () => (await addonOf("q1")).plan === "big");
  assert.equal(broker.instances.get(id)?.plan, "plan-big");
  assert.equal((await addonOf("q1")).broker?.state, "ready");
  const events = (await call("GET", "/events?app=q1")).body.items as { reason: string }[];
  assert.ok(events.some((e) => e.reason === "AddonPlanFailed"));
  assert.ok(events.some((e) => e.reason === "AddonPlanChanged"));
});

test("rotating a broker binding: a new binding, a new release, the old one unbound after the rollout", async () => {
  await appWithRelease("shop");
  const attached = await call("POST", "/addons/q1/attach", { app: "shop", var: "QUEUE_URL" });
  assert.equal(attached.status, 201, JSON.stringify(attached.body));
  const inst = (await addonOf("q1")).broker?.instanceId as string;
  const oldId = attached.body.binding.bindingId as string;
  assert.equal(await server.secrets.value("default", "shop", "QUEUE_USERNAME"), `u-${oldId.slice(0, 8)}`);
  await finished("shop", attached.body.deploy);

  const rotated = await cli("addons", "rotate", "q1", "--app", "shop");
  assert.equal(rotated.code, 0, rotated.err);
  const b = (await addonOf("q1")).bindings[0];
  assert.notEqual(b.bindingId, oldId);
  assert.equal(b.rotation, 1);
  assert.ok(broker.bindings.has(`${inst}/${b.bindingId}`), "bound anew at the broker");
  assert.equal(
    await server.secrets.value("default", "shop", "QUEUE_USERNAME"),
    `u-${b.bindingId?.slice(0, 8)}`,
  );
  assert.match(rotated.out, /shop: new credentials, deploy \S+ rolls them out/);
  const again = await call("POST", "/addons/q1/rotate", { app: "shop" });
  assert.equal(again.status, 409, "one rotation at a time");
  // The deploy finishes, then the timer unbinds the old binding.
  await finished("shop", b.revoke?.afterDeploy as string);
  await until("the old binding unbound", async () => !broker.bindings.has(`${inst}/${oldId}`));
  await until("the revoke cleared", async () => (await addonOf("q1")).bindings[0].revoke === undefined);
  const rel = ((await call("GET", "/apps/shop/releases")).body.items as Release[])[0];
  assert.ok(rel.services.web.secrets?.QUEUE_USERNAME, "the release carries the new secrets");

  // A crash after the new binding's id was kept, before the broker answered: the timer rolls it forward.
  const current = (await addonOf("q1")).bindings[0].bindingId as string;
  const a = await addonOf("q1");
  await server.store.put("addon", "default/q1", {
    ...a,
    bindings: [
      {
        ...a.bindings[0],
        rotating: { bindingId: "crash-rot", since: new Date(Date.now() - 200_000).toISOString() },
      },
    ],
  });
  await until(
    "the rotation rolled forward",
    async () => (await addonOf("q1")).bindings[0].bindingId === "crash-rot",
  );
  assert.ok(broker.bindings.has(`${inst}/crash-rot`));
  assert.equal(await server.secrets.value("default", "shop", "QUEUE_USERNAME"), "u-crash-ro");
  await until("the binding before it unbound", async () => !broker.bindings.has(`${inst}/${current}`));

  // Detach while a rotation is half done: every binding of the app goes at the broker.
  const b2 = await addonOf("q1");
  broker.bindings.set(`${inst}/half`, { uri: "x" });
  await server.store.put("addon", "default/q1", {
    ...b2,
    bindings: [{ ...b2.bindings[0], rotating: { bindingId: "half", since: new Date().toISOString() } }],
  });
  const detached = await call("POST", "/addons/q1/detach", { app: "shop" });
  assert.equal(detached.status, 200, JSON.stringify(detached.body));
  assert.deepEqual(
    [...broker.bindings.keys()].filter((k) => k.startsWith(inst)),
    [],
    "no binding left behind",
  );
});

test("bind parameters are checked against the plan's binding schema and sent with the bind (and its rotation)", async () => {
  await appWithRelease("reports");
  const binds = () => broker.asked("PUT", "").filter((x) => x.path.includes("/service_bindings/"));
  const asked = binds().length;
  const bad = await call("POST", "/addons/q1/attach", {
    app: "reports",
    parameters: { role: "admin", colour: "red" },
  });
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
  assert.deepEqual(bad.body.details.map((d: { field: string }) => d.field).sort(), [
    "parameters.colour",
    "parameters.role",
  ]);
  assert.match(bad.body.message, /\(binding\)/);
  assert.equal(binds().length, asked, "a refused bind never reaches the broker");
  assert.equal((await addonOf("q1")).bindings.length, 0, "nothing kept for a refused bind");
  const cliBad = await cli("addons", "attach", "q1", "--app", "reports", "--param", "role=owner");
  assert.notEqual(cliBad.code, 0);
  assert.match(cliBad.err, /parameters\.role must be one of reader, writer/);

  const ok = await cli(
    "addons",
    "attach",
    "q1",
    "--app",
    "reports",
    "--as",
    "QUEUE_URL",
    "--param",
    "role=reader",
  );
  assert.equal(ok.code, 0, ok.err);
  const puts = binds().slice(asked);
  assert.equal(puts.length, 1);
  assert.deepEqual(puts[0].body.parameters, { role: "reader" });
  const b = (await addonOf("q1")).bindings.find((x) => x.app === "reports");
  assert.deepEqual(b?.parameters, { role: "reader" }, "kept for the rotation's bind");

  const rotated = await call("POST", "/addons/q1/rotate", { app: "reports" });
  assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
  const newId = (await addonOf("q1")).bindings.find((y) => y.app === "reports")?.bindingId as string;
  assert.notEqual(newId, b?.bindingId);
  assert.deepEqual(binds().find((x) => x.path.endsWith(`/${newId}`))?.body.parameters, { role: "reader" });

  // A plan without a binding schema takes any object; herd's own kinds none (checked in the e2e).
  const plans = (await call("GET", "/addon-plans")).body.items as {
    kind: string;
    plan: string;
    bindParameters?: unknown;
  }[];
  assert.ok(plans.find((p) => p.kind === "queue" && p.plan === "small")?.bindParameters);
  await finished("reports", rotated.body.rotated[0].deploy);
  const detached = await call("POST", "/addons/q1/detach", { app: "reports" });
  assert.equal(detached.status, 200, JSON.stringify(detached.body));
});

test("a tenant owner registers a broker only its tenant sees", async () => {
  for (const t of ["acme", "other"]) assert.equal((await call("POST", "/tenants", { name: t })).status, 201);
  const token = async (user: string, tenant: string, role: string) => {
    assert.equal((await call("POST", "/users", { name: user })).status, 201);
    assert.equal((await call("PUT", `/tenants/${tenant}/members/${user}`, { role })).status, 200);
    return (await call("POST", "/tokens", { name: `${user}'s`, user })).body.token as string;
  };
  const olga = await token("olga", "acme", "owner");
  const dave = await token("dave", "acme", "deployer");
  const otto = await token("otto", "other", "owner");
  const body = { name: "own", url: broker.url, user: USER, password: PASSWORD };

  const byDeployer = await call("POST", "/tenant-brokers", body, dave);
  assert.equal(byDeployer.status, 403);
  assert.match(byDeployer.body.message, /brokers:write needs the owner role/);
  assert.equal(
    (await call("POST", "/addon-brokers", body, olga)).status,
    403,
    "a platform broker is the admin's",
  );
  const clash = await call("POST", "/tenant-brokers", { ...body, name: "osb" }, olga);
  assert.equal(clash.status, 409, "a platform broker's name");
  const bad = await call("POST", "/tenant-brokers", { ...body, url: "http://[::1]:9/" }, olga);
  assert.equal(bad.status, 403, "the same URL guard");
  const ok = await call("POST", "/tenant-brokers", body, olga);
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.equal(ok.body.tenant, "acme");
  assert.equal(
    await server.secrets.value("acme", "_broker.own", "password"),
    PASSWORD,
    "in the tenant's secret store",
  );
  assert.equal(
    (await call("POST", "/addon-brokers", { ...body, name: "own" })).status,
    409,
    "the platform cannot take it",
  );

  // acme sees it (the kind then needs its broker: two offer queue); other does not.
  const acmePlans = (await call("GET", "/addon-plans", undefined, dave)).body.items as {
    kind: string;
    source: string;
  }[];
  assert.ok(acmePlans.some((p) => p.kind === "own/queue" && p.source === "own (tenant)"));
  const otherPlans = (await call("GET", "/addon-plans", undefined, otto)).body.items as { kind: string }[];
  assert.ok(!otherPlans.some((p) => p.kind.startsWith("own/")));
  assert.ok(
    otherPlans.some((p) => p.kind === "queue"),
    "the platform's is plain queue there",
  );
  assert.deepEqual((await call("GET", "/tenant-brokers", undefined, otto)).body.items, []);
  assert.equal((await call("GET", "/tenant-brokers?tenant=acme", undefined, otto)).status, 403);
  const ottoTries = await call(
    "POST",
    "/addons",
    { kind: "own/queue", name: "x", parameters: { region: "eu" } },
    otto,
  );
  assert.equal(ottoTries.status, 400);
  assert.equal(ottoTries.body.details[0].field, "kind");
  assert.equal((await call("DELETE", "/tenant-brokers/own?tenant=acme", undefined, otto)).status, 403);

  // A deployer of acme uses it; the add-on names the tenant's broker.
  await appWithRelease("web", "acme");
  const made = await call(
    "POST",
    "/addons",
    { kind: "own/queue", app: "web", parameters: { region: "us" } },
    dave,
  );
  assert.equal(made.status, 201, JSON.stringify(made.body));
  assert.equal(made.body.addon.broker.tenantBroker, true);
  const inst = made.body.addon.broker.instanceId as string;
  assert.ok(broker.instances.has(inst));
  const listed = await cli("addons", "brokers");
  assert.match(
    listed.out,
    /own\s+http:\S+\s+herd\s+acme\s+mail/,
    "the admin sees every broker with its tenant",
  );
  const ownList = await runCli(["addons", "brokers", "--scope", "tenant"], {
    server: server.url,
    token: olga,
  });
  assert.equal(ownList.code, 0, ownList.err);
  assert.match(ownList.out, /^own\s/m);
  assert.doesNotMatch(ownList.out, /^osb\s/m);

  assert.equal(
    (await call("DELETE", "/tenant-brokers/own", undefined, olga)).status,
    409,
    "it runs an add-on",
  );
  const gone = await call(
    "DELETE",
    `/addons/${made.body.addon.name}?tenant=acme&confirm=${made.body.addon.name}`,
    undefined,
    dave,
  );
  assert.equal(gone.status, 200, JSON.stringify(gone.body));
  assert.ok(!broker.instances.has(inst), "deprovisioned through the tenant's broker");
  const removed = await runCli(["addons", "brokers", "remove", "own", "--scope", "tenant"], {
    server: server.url,
    token: olga,
  });
  assert.equal(removed.code, 0, removed.err);
  await assert.rejects(server.secrets.value("acme", "_broker.own", "password"));
  assert.equal((await call("GET", "/tenant-brokers", undefined, olga)).body.items.length, 0);
});
