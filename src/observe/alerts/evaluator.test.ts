// The alert state machine against a real Tsdb with written samples and a
// manual clock; webhook delivery to a real local HTTP server (retry after a
// 500, a receiver that is down); silences; the state file across a restart.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ManualClock } from "../../common/clock.ts";
import { silentLogger } from "../../common/log.ts";
import { UrlGuard } from "../../common/url-guard.ts";
import { EventRecorder } from "../../controllers/events.ts";
import type { AlertRule, AlertRuleObject, Receiver, Silence } from "../../model/alerts.ts";
import { type App, type Event, type Release, releaseKey } from "../../model/objects.ts";
import { Keyring } from "../../secrets/keyring.ts";
import { receiverHeaderValues } from "../../secrets/receiver-headers.ts";
import { receiverScope, SecretStore } from "../../secrets/secret-store.ts";
import { MemoryStore } from "../../store/memory-store.ts";
import { Tsdb } from "../tsdb/tsdb.ts";
import {
  AlertEvaluator,
  type AlertTransition,
  MAX_ALERTS_PER_RULE,
  MAX_RULES_PER_TENANT,
} from "./evaluator.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");

function setup(t: { after(fn: () => void | Promise<void>): void }, defaults: AlertRule[] = []) {
  const dir = mkdtempSync(join(tmpdir(), "herd-alerts-"));
  const clock = new ManualClock(T0);
  const store = new MemoryStore();
  const tsdb = new Tsdb({ dir: join(dir, "metrics"), now: () => clock.now() });
  const events = new EventRecorder(store, clock, silentLogger);
  const secrets = new SecretStore(store, Keyring.open(dir));
  const make = () =>
    new AlertEvaluator({
      store,
      tsdb,
      events,
      clock,
      logger: silentLogger,
      stateFile: join(dir, "alerts", "state.json"),
      defaults,
      notifier: {
        backoffMs: 30,
        maxBackoffMs: 100,
        tickMs: 10,
        maxAttempts: 3,
        timeoutMs: 1000,
        // The test's receivers listen on 127.0.0.1.
        guard: new UrlGuard({ allow: ["127.0.0.0/8"] }),
      },
      receiverHeaders: (key) => receiverHeaderValues(store, secrets, key),
    });
  const evaluator = make();
  evaluator.notifier.start();
  const evaluators = [evaluator];
  t.after(async () => {
    for (const e of evaluators) await e.stop();
    tsdb.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** Writes `temp{room}` (of a tenant, when given) = value at the clock's now. */
  const write = (room: string, value: number, tenant?: string) =>
    tsdb.append([
      { labels: { __name__: "temp", room, ...(tenant ? { tenant } : {}) }, samples: [[clock.now(), value]] },
    ]);
  const alertEvents = async () =>
    (await events.list({ limit: 1000 })).filter((e: Event) => e.reason.startsWith("Alert"));
  const restart = () => {
    const e = make();
    e.notifier.start();
    evaluators.push(e);
    return e;
  };
  return { dir, clock, store, tsdb, events, secrets, evaluator, write, alertEvents, restart };
}

const rule = (name: string, body: Partial<AlertRuleObject>): AlertRuleObject => ({
  tenant: "default",
  name,
  expr: "temp",
  createdAt: "",
  updatedAt: "",
  ...body,
});

async function startReceiver(t: { after(fn: () => Promise<void>): void }, answer: (n: number) => number) {
  const bodies: { status: string; alerts: { labels: Record<string, string> }[]; auth?: string }[] = [];
  let n = 0;
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const status = answer(n++);
    if (status === 200)
      bodies.push({ ...JSON.parse(Buffer.concat(chunks).toString()), auth: req.headers.authorization });
    res.writeHead(status).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, bodies, calls: () => n };
}

test("pending until `for` has passed, then firing, then resolved; each label set on its own", async (t) => {
  const s = setup(t);
  await s.store.put(
    "alert_rule",
    "default/hot",
    rule("hot", {
      op: ">",
      threshold: 30,
      for: "1m",
      severity: "critical",
      annotations: { summary: "room {{ $labels.room }} is at {{ $value }}" },
    }),
  );
  const seen: AlertTransition[] = [];
  s.evaluator.on((x) => seen.push(x));

  s.write("a", 35);
  s.write("b", 20);
  await s.evaluator.evaluate();
  let active = s.evaluator.active();
  assert.equal(active.length, 1);
  assert.equal(active[0]?.state, "pending");
  assert.deepEqual(active[0]?.labels, { room: "a", alertname: "hot", severity: "critical" });

  s.clock.advance(30_000);
  s.write("a", 36);
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active()[0]?.state, "pending", "30 s of a 1 m `for`");
  assert.equal((await s.alertEvents()).length, 0);

  s.clock.advance(30_000);
  s.write("a", 37);
  s.write("b", 31); // b starts its own pending period
  await s.evaluator.evaluate();
  active = s.evaluator.active();
  const a = active.find((x) => x.labels.room === "a");
  const b = active.find((x) => x.labels.room === "b");
  assert.equal(a?.state, "firing");
  assert.equal(a?.annotations.summary, "room a is at 37");
  assert.equal(b?.state, "pending");
  let evs = await s.alertEvents();
  assert.equal(evs.length, 1);
  assert.equal(evs[0]?.reason, "AlertFiring");
  assert.equal(evs[0]?.type, "warning");
  assert.match(evs[0]?.message ?? "", /alert hot firing \[critical\]: room a is at 37 \(value 37\)/);
  assert.ok(evs[0]?.details?.includes("room=a"));

  s.clock.advance(15_000);
  s.write("a", 25); // condition gone: resolved
  s.write("b", 20); // gone while pending: dropped without an event
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active().length, 0);
  evs = await s.alertEvents();
  assert.deepEqual(
    evs.map((e) => e.reason),
    ["AlertFiring", "AlertResolved"],
  );
  assert.equal(evs[1]?.type, "normal");
  assert.deepEqual(
    seen.map((x) => `${x.status}:${x.alert.labels.room}`),
    ["firing:a", "resolved:a"],
  );
});

test("a rule with no `for` fires at once; a broken query keeps its alerts; a deleted rule resolves them", async (t) => {
  const s = setup(t);
  await s.store.put("alert_rule", "default/any", rule("any", { expr: "temp > 0" }));
  s.write("a", 1);
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active()[0]?.state, "firing");
  // Evaluation errors (many-to-many here is impossible to produce simply; use an unknown function) keep state.
  await s.store.put("alert_rule", "default/any", rule("any", { expr: "nosuchfunction(temp)" }));
  s.clock.advance(15_000);
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active().length, 1);
  assert.match(s.evaluator.health("api/default/any")?.lastError ?? "", /nosuchfunction/);
  await s.store.delete("alert_rule", "default/any");
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active().length, 0);
  assert.deepEqual(
    (await s.alertEvents()).map((e) => e.reason),
    ["AlertFiring", "AlertResolved"],
  );
});

test("built-in rules: replaced or disabled by an API rule of the same name in the default tenant", async (t) => {
  const builtin: AlertRule = { name: "cold", source: "default", expr: "temp < 10", severity: "info" };
  const s = setup(t, [builtin]);
  s.write("x", 5);
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active()[0]?.ruleKey, "default/cold");
  await s.store.put("alert_rule", "default/cold", rule("cold", { expr: "temp < 10", disabled: true }));
  assert.equal((await s.evaluator.rules()).length, 0);
  s.clock.advance(15_000);
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active().length, 0);
});

test("webhooks: retried after a 500, a receiver that is down fails visibly, resolved follows firing", async (t) => {
  const s = setup(t);
  const flaky = await startReceiver(t, (n) => (n === 0 ? 500 : 200));
  // Its header's value is a secret: the notifier gets it decrypted for each attempt.
  await s.secrets.set("default", receiverScope("ops"), "authorization", "Bearer hook", "test");
  await s.store.put<Receiver>("alert_receiver", "default/ops", {
    tenant: "default",
    name: "ops",
    url: flaky.url,
    headers: { authorization: { secret: "authorization", version: 1 } },
    createdAt: "",
    updatedAt: "",
  });
  // A receiver that is down: port 2, where nothing listens, so connections are refused. (A port just
  // closed could be taken meanwhile by a test running beside this one; fetch refuses to dial port 1.)
  const downPort = 2;
  await s.store.put<Receiver>("alert_receiver", "default/down", {
    tenant: "default",
    name: "down",
    url: `http://127.0.0.1:${downPort}/hook`,
    createdAt: "",
    updatedAt: "",
  });
  await s.store.put<Receiver>("alert_receiver", "default/pager", {
    tenant: "default",
    name: "pager",
    url: flaky.url,
    severities: ["critical"],
    createdAt: "",
    updatedAt: "",
  });
  await s.store.put("alert_rule", "default/hot", rule("hot", { op: ">", threshold: 30 }));
  s.write("a", 40);
  await s.evaluator.evaluate();
  await waitUntil(() => flaky.bodies.length === 1);
  s.clock.advance(15_000);
  s.write("a", 10);
  await s.evaluator.evaluate();
  await waitUntil(() => flaky.bodies.length === 2);
  assert.deepEqual(
    flaky.bodies.map((b) => b.status),
    ["firing", "resolved"],
  );
  assert.equal(flaky.calls(), 3, "one 500, then two deliveries; pager (critical only) got nothing");
  assert.equal(flaky.bodies[0]?.auth, "Bearer hook");
  assert.deepEqual(flaky.bodies[0]?.alerts[0]?.labels, { room: "a", alertname: "hot", severity: "warning" });
  // The receiver has the body before the notifier has read its answer.
  await waitUntil(() => s.evaluator.notifier.status("default/ops").delivered === 2);
  const ops = s.evaluator.notifier.status("default/ops");
  assert.equal(ops.delivered, 2);
  assert.equal(ops.failedAttempts, 1);
  assert.match(ops.lastError ?? "", /HTTP 500/);
  await waitUntil(() => s.evaluator.notifier.status("default/down").dropped === 2);
  const down = s.evaluator.notifier.status("default/down");
  assert.equal(down.failedAttempts, 6, "3 attempts for each of 2 notifications");
  assert.match(down.lastError ?? "", /ECONNREFUSED.*given up/);
});

test("a silenced alert still fires (the event says so) but notifies only once the silence ends", async (t) => {
  const s = setup(t);
  const hook = await startReceiver(t, () => 200);
  await s.store.put<Receiver>("alert_receiver", "default/ops", {
    tenant: "default",
    name: "ops",
    url: hook.url,
    createdAt: "",
    updatedAt: "",
  });
  await s.store.put<Silence>("alert_silence", "default/s1", {
    tenant: "default",
    id: "s1",
    matchers: [
      { name: "alertname", op: "=", value: "hot" },
      { name: "room", op: "=~", value: "a|b" },
    ],
    startsAt: new Date(T0).toISOString(),
    until: new Date(T0 + 60_000).toISOString(),
    comment: "maintenance",
    createdAt: "",
  });
  await s.store.put("alert_rule", "default/hot", rule("hot", { op: ">", threshold: 30 }));
  s.write("a", 40);
  s.write("c", 40);
  await s.evaluator.evaluate();
  const a = s.evaluator.active().find((x) => x.labels.room === "a");
  assert.equal(a?.state, "firing");
  assert.equal(a?.silencedBy, "s1");
  const evs = await s.alertEvents();
  assert.equal(evs.length, 2);
  assert.match(evs.find((e) => e.details?.includes("room=a"))?.message ?? "", /silenced by s1/);
  await waitUntil(() => hook.bodies.length === 1);
  assert.equal(hook.bodies[0]?.alerts[0]?.labels.room, "c", "only the unsilenced one");

  s.clock.advance(60_000); // the silence ends while a still fires: now it is notified
  s.write("a", 41);
  s.write("c", 41);
  await s.evaluator.evaluate();
  await waitUntil(() => hook.bodies.length === 2);
  assert.equal(hook.bodies[1]?.alerts[0]?.labels.room, "a");
  assert.equal(s.evaluator.active().find((x) => x.labels.room === "a")?.silencedBy, undefined);
});

test("after a restart: firing alerts stay firing (no second event) and undelivered notifications are sent", async (t) => {
  const s = setup(t);
  let up = false;
  const hook = await startReceiver(t, () => (up ? 200 : 503));
  await s.secrets.set("default", receiverScope("ops"), "authorization", "Bearer kept-out-of-files", "test");
  await s.store.put<Receiver>("alert_receiver", "default/ops", {
    tenant: "default",
    name: "ops",
    url: hook.url,
    headers: { Authorization: { secret: "authorization", version: 1 } },
    createdAt: "",
    updatedAt: "",
  });
  await s.store.put("alert_rule", "default/hot", rule("hot", { op: ">", threshold: 30 }));
  s.write("a", 40);
  await s.evaluator.evaluate();
  await waitUntil(() => hook.calls() >= 1);
  await s.evaluator.stop(); // "crash": the delivery is still in the outbox, written to the state file
  const state = readFileSync(join(s.dir, "alerts", "state.json"), "utf8");
  assert.ok(state.includes("default/ops") && !state.includes("kept-out-of-files"), "no header value on disk");
  up = true;
  const again = s.restart();
  assert.equal(again.active()[0]?.state, "firing");
  await again.notifier.drained();
  assert.equal(hook.bodies.length, 1);
  assert.equal(hook.bodies[0]?.status, "firing");
  assert.equal(hook.bodies[0]?.auth, "Bearer kept-out-of-files", "the header is decrypted for the delivery");
  s.clock.advance(15_000);
  s.write("a", 41);
  await again.evaluate();
  assert.equal((await s.alertEvents()).length, 1, "still the one AlertFiring");
});

test("herd.yaml rules of the release an app serves are evaluated, labelled with the app", async (t) => {
  const s = setup(t);
  const app: App = { tenant: "acme", name: "shop", createdAt: "", release: 2, latestVersion: 2 };
  await s.store.put("app", "acme/shop", app);
  const release = (version: number, threshold: number): Release => ({
    tenant: "acme",
    app: "shop",
    version,
    createdAt: "",
    description: "",
    source: "",
    slug: "",
    services: {},
    alerts: { warm: { expr: "temp", op: ">", threshold } },
  });
  await s.store.put("release", releaseKey("acme", "shop", 1), release(1, 100));
  await s.store.put("release", releaseKey("acme", "shop", 2), release(2, 20));
  s.write("a", 25, "acme");
  await s.evaluator.evaluate();
  const [a] = s.evaluator.active("acme");
  assert.equal(a?.ruleKey, "app/acme/shop/warm");
  assert.equal(a?.labels.app, "shop");
  assert.equal(s.evaluator.active("default").length, 0, "another tenant sees nothing");
  const [ev] = await s.events.list({ tenant: "acme", app: "shop" });
  assert.equal(ev?.reason, "AlertFiring");
  // Rolled back to v1 (threshold 100): the alert resolves.
  await s.store.put("app", "acme/shop", { ...app, release: 1 });
  s.clock.advance(15_000);
  s.write("a", 26, "acme");
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active().length, 0);
});

test("a tenant's rules see only the tenant's series; the default tenant's also the platform's, never another tenant's", async (t) => {
  const s = setup(t);
  const hot = { expr: "temp", op: ">" as const, threshold: 20 };
  await s.store.put("alert_rule", "acme/hot", rule("hot", { ...hot, tenant: "acme" }));
  await s.store.put("alert_rule", "default/hot", rule("hot", hot));
  // Another tenant's series and a platform series (no tenant label) are hot; acme's is not.
  s.write("a", 10, "acme");
  s.write("b", 99, "evil");
  s.write("c", 99);
  // A rule naming another tenant still reads its own tenant's series only.
  await s.store.put(
    "alert_rule",
    "acme/sneaky",
    rule("sneaky", { expr: 'temp{tenant="evil"} or absent(temp{tenant="evil"})', tenant: "acme" }),
  );
  await s.evaluator.evaluate();
  assert.deepEqual(
    s.evaluator.active("acme").map((a) => [a.rule, a.labels.room, a.labels.tenant]),
    [["sneaky", "a", "acme"]],
  );
  assert.deepEqual(
    s.evaluator
      .active("default")
      .map((a) => a.labels.room)
      .sort(),
    ["c"],
    "the default tenant's rule sees the platform's series, not tenant evil's",
  );
  s.clock.advance(15_000);
  s.write("a", 25, "acme");
  await s.evaluator.evaluate();
  assert.deepEqual(
    s.evaluator
      .active("acme")
      .filter((a) => a.rule === "hot" && a.ruleKey === "api/acme/hot")
      .map((a) => a.labels.room),
    ["a"],
  );
});

test("past MAX_RULES_PER_TENANT a tenant's further rules are not evaluated, and say why", async (t) => {
  const s = setup(t);
  for (let i = 0; i <= MAX_RULES_PER_TENANT; i++) {
    await s.store.put("alert_rule", `acme/r${String(i).padStart(3, "0")}`, rule(`r${i}`, { tenant: "acme" }));
  }
  s.write("a", 1, "acme");
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active("acme").length, MAX_RULES_PER_TENANT);
  assert.match(
    s.evaluator.health(`api/acme/r${MAX_RULES_PER_TENANT}`)?.lastError ?? "",
    /not evaluated: tenant acme has more than 100 rules/,
  );
});

test("a rule matching too many series makes at most MAX_ALERTS_PER_RULE alerts and says why", async (t) => {
  const s = setup(t);
  await s.store.put("alert_rule", "default/all", rule("all", {}));
  for (let i = 0; i <= MAX_ALERTS_PER_RULE; i++) s.write(`r${i}`, 1);
  await s.evaluator.evaluate();
  assert.equal(s.evaluator.active().length, MAX_ALERTS_PER_RULE);
  assert.match(s.evaluator.health("api/default/all")?.lastError ?? "", /returned 501 series/);
});

async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}
