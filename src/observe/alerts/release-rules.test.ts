// herd.yaml `alerts:` travel with the release: detected from the source,
// kept in the release a deploy makes, and copied by a rollback.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { loadAppDefinition } from "../../builder/detect.ts";
import { ManualClock } from "../../common/clock.ts";
import { silentLogger } from "../../common/log.ts";
import { DEFAULT_SETTINGS } from "../../controllers/context.ts";
import { DeployLogs } from "../../controllers/deploy-log.ts";
import { EventRecorder } from "../../controllers/events.ts";
import { ControllerManager } from "../../controllers/manager.ts";
import { type App, type Deploy, type Release, releaseKey } from "../../model/objects.ts";
import { Keyring } from "../../secrets/keyring.ts";
import { SecretStore } from "../../secrets/secret-store.ts";
import { controlPlaneInformer } from "../../store/informer-kinds.ts";
import { MemoryStore } from "../../store/memory-store.ts";

test("herd.yaml alerts are detected, kept in the release, and copied by a rollback", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-release-rules-"));
  const store = new MemoryStore();
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(
    join(dir, "herd.yaml"),
    "app: shop\nservices:\n  web:\n    command: node server.js\nalerts:\n  busy:\n    expr: shop_queue_depth > 10\n    for: 1m\n",
  );
  const definition = await loadAppDefinition(dir);
  assert.deepEqual(definition.alerts, { busy: { expr: "shop_queue_depth > 10", for: "1m" } });

  const clock = new ManualClock();
  const m = new ControllerManager({
    store,
    informer: controlPlaneInformer(store),
    clock,
    logger: silentLogger,
    events: new EventRecorder(store, clock, silentLogger),
    deployLogs: new DeployLogs(join(dir, "deploys")),
    settings: { ...DEFAULT_SETTINGS },
    secrets: new SecretStore(store, Keyring.open(dir)),
  });
  const app: App = { tenant: "default", name: "shop", createdAt: "", release: null, latestVersion: 0 };
  await store.put("app", "default/shop", app);
  const waitBuilt = async (id: string) => {
    for (let n = 0; n < 200; n++) {
      const d = await store.get<Deploy>("deploy", `default/shop/${id}`);
      if (d && d.value.state !== "building") return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error("build did not finish");
  };
  const d = await m.deploys.startDeploy("default", "shop", async () => ({
    source: "a".repeat(64),
    slug: "b".repeat(64),
    services: definition.services,
    alerts: definition.alerts,
    description: "test",
  }));
  await waitBuilt(d.id);
  const v1 = await store.get<Release>("release", releaseKey("default", "shop", 1));
  assert.deepEqual(v1?.value.alerts, definition.alerts);

  // Pretend v1 served; a v2 without alerts; a rollback to v1 brings its alerts back as v3.
  const a = await store.get<App>("app", "default/shop");
  await store.put("app", "default/shop", { ...a!.value, release: 1 });
  const d2 = await m.deploys.startDeploy("default", "shop", async () => ({
    source: "c".repeat(64),
    slug: "d".repeat(64),
    services: definition.services,
    description: "no alerts",
  }));
  await waitBuilt(d2.id);
  const a2 = await store.get<App>("app", "default/shop");
  await store.put("app", "default/shop", { ...a2!.value, release: 2 });
  assert.equal(
    (await store.get<Release>("release", releaseKey("default", "shop", 2)))?.value.alerts,
    undefined,
  );
  await m.deploys.rollback("default", "shop", 1);
  const v3 = await store.get<Release>("release", releaseKey("default", "shop", 3));
  assert.deepEqual(v3?.value.alerts, definition.alerts);
  m.stop();
});
