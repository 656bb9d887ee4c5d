// The built-in service alerts from end to end, with a manual clock: real
// controllers (in-memory store, heartbeats written by the test) fail three
// apps' instances three ways; the API's state gauges are scraped into a real
// Tsdb; the evaluator runs the built-in rules and posts to a local webhook
// receiver. A crash is a crash-loop, a failing health check is not; a failed
// service fires once and stays firing without notifying again; destroying
// the apps resolves their alerts at once.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Registry } from "prom-client";
import { ManualClock } from "../../common/clock.ts";
import { silentLogger } from "../../common/log.ts";
import { UrlGuard } from "../../common/url-guard.ts";
import { type Context, DEFAULT_SETTINGS } from "../../controllers/context.ts";
import { DeployLogs } from "../../controllers/deploy-log.ts";
import { EventRecorder } from "../../controllers/events.ts";
import { ControllerManager } from "../../controllers/manager.ts";
import type { Receiver } from "../../model/alerts.ts";
import { normalizeService } from "../../model/manifest.ts";
import type { App, Instance, Service } from "../../model/objects.ts";
import type { Heartbeat, InstanceStatus } from "../../model/protocol.ts";
import { Keyring } from "../../secrets/keyring.ts";
import { SecretStore } from "../../secrets/secret-store.ts";
import { controlPlaneInformer } from "../../store/informer-kinds.ts";
import { MemoryStore } from "../../store/memory-store.ts";
import { stateGauges } from "../metrics.ts";
import { parseText } from "../tsdb/text-format.ts";
import { Tsdb } from "../tsdb/tsdb.ts";
import { DEFAULT_RULES } from "./defaults.ts";
import { AlertEvaluator } from "./evaluator.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");

/** How each app's instances behave on the node. */
const BEHAVIOUR: Record<string, InstanceStatus["state"]> = {
  crashy: "exited", // the process exits at once
  sick: "unhealthy", // the process runs, its health check fails
  slow: "up", // the process runs, never healthy within its startup time
};

type Hook = { status: string; alerts: { labels: Record<string, string> }[] };

test("built-in service alerts: crashes, failing health checks, failed services, destroyed apps", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-service-alerts-"));
  const clock = new ManualClock(T0);
  const store = new MemoryStore();
  const events = new EventRecorder(store, clock, silentLogger);
  const ctx: Context = {
    store,
    informer: controlPlaneInformer(store),
    clock,
    logger: silentLogger,
    events,
    deployLogs: new DeployLogs(join(dir, "deploys")),
    settings: { ...DEFAULT_SETTINGS },
    secrets: new SecretStore(store, Keyring.open(dir)),
  };
  const m = new ControllerManager(ctx);
  const tsdb = new Tsdb({ dir: join(dir, "metrics"), now: () => clock.now() });
  const registry = new Registry();
  stateGauges(registry, store);
  const evaluator = new AlertEvaluator({
    store,
    tsdb,
    events,
    clock,
    logger: silentLogger,
    defaults: DEFAULT_RULES,
    notifier: { tickMs: 10, backoffMs: 30, guard: new UrlGuard({ allow: ["127.0.0.0/8"] }) },
  });
  evaluator.notifier.start();
  const hooks: Hook[] = [];
  const receiver = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    hooks.push(JSON.parse(Buffer.concat(chunks).toString()) as Hook);
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  t.after(async () => {
    await evaluator.stop();
    receiver.closeAllConnections();
    await new Promise((r) => receiver.close(r));
    tsdb.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const hook: Receiver = {
    tenant: "default",
    name: "ops",
    url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
  } as Receiver;
  await store.put("alert_receiver", "default/ops", hook);

  const heartbeat = (instances: InstanceStatus[]): Heartbeat => ({
    address: "127.0.0.1",
    labels: {},
    capacity: { cpu: 8, memory: 16 * 1024 ** 3 },
    agentVersion: "test",
    isolation: { cgroups: "none", reason: "test" },
    instances,
  });
  const settle = async () => {
    for (let n = 0; n < 4; n++) {
      await m.resync();
      await m.idle();
    }
  };
  /** One agent round trip: every instance of n1 reports what its app does (stopped ones report stopped). */
  const agentRound = async () => {
    const statuses: InstanceStatus[] = [];
    for (const { value: i } of (await store.list<Instance>("instance")).items) {
      if (i.node !== "n1") continue;
      const state = i.desired === "running" ? (BEHAVIOUR[i.app] ?? "healthy") : "stopped";
      statuses.push({ id: i.id, generation: i.generation, state, port: 20000, pid: 100 });
    }
    await m.nodes.handleHeartbeat("n1", heartbeat(statuses));
  };
  /** The API's /metrics as herd's scraper reads it, written at the clock's now. */
  const scrape = async () => {
    const now = clock.now();
    tsdb.append(
      parseText(await registry.metrics()).samples.map((s) => ({
        labels: { ...s.labels, job: "herd-api" },
        samples: [[now, s.value]],
      })),
    );
  };
  /** One 15 s step of the world: agents report, controllers act, /metrics is scraped, rules evaluated. */
  const step = async () => {
    await settle();
    await agentRound();
    await settle();
    await scrape();
    await evaluator.evaluate();
    clock.advance(15_000);
  };
  const firing = () =>
    evaluator
      .active()
      .filter((a) => a.state === "firing")
      .map((a) => `${a.rule} ${a.labels.app}`)
      .sort();
  const notified = (status: string) =>
    hooks
      .filter((h) => h.status === status)
      .map((h) => `${h.alerts[0]?.labels.alertname} ${h.alerts[0]?.labels.app}`)
      .sort();

  await m.nodes.handleHeartbeat("n1", heartbeat([]));
  for (const app of Object.keys(BEHAVIOUR)) {
    const o: App = { tenant: "default", name: app, createdAt: "", release: null, latestVersion: 0 };
    await store.put("app", `default/${app}`, o);
    await m.deploys.startDeploy("default", app, async () => ({
      source: "b".repeat(64),
      slug: "a".repeat(64),
      services: {
        web: normalizeService(app, "web", { command: "node server.js", instances: 1 }, undefined),
      },
      description: "test",
    }));
  }
  // Ten minutes: every service fails three times and is given up on (a first deploy that never runs).
  for (let n = 0; n < 40; n++) await step();

  const services = new Map(
    (await store.list<Service>("service")).items.map((o) => [o.value.app, o.value] as const),
  );
  for (const app of Object.keys(BEHAVIOUR)) assert.equal(services.get(app)?.state, "failed", app);
  assert.deepEqual(firing(), [
    "health-check-failing sick",
    "health-check-failing slow",
    "instance-crash-loop crashy",
    "service-failed crashy",
    "service-failed sick",
    "service-failed slow",
  ]);
  await evaluator.notifier.drained();
  assert.deepEqual(notified("firing"), firing(), "each alert notified once, however long it fires");
  assert.deepEqual(notified("resolved"), []);

  // Destroyed: every alert of the three apps resolves at the next evaluation, not when the series age out.
  for (const app of Object.keys(BEHAVIOUR)) {
    const o = await store.get<App>("app", `default/${app}`);
    await store.put(
      "app",
      `default/${app}`,
      { ...o!.value, destroying: true },
      { expectRevision: o!.revision },
    );
  }
  await step();
  assert.deepEqual(firing(), []);
  await evaluator.notifier.drained();
  assert.deepEqual(notified("resolved"), notified("firing"));
  const alertEvents = (await events.list({ limit: 1000 })).filter((e) => e.reason.startsWith("Alert"));
  assert.equal(alertEvents.filter((e) => e.reason === "AlertFiring").length, 6);
  assert.equal(alertEvents.filter((e) => e.reason === "AlertResolved").length, 6);
});
