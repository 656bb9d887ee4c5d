// Deploy logs are kept for the newest finished deploys of each app only;
// running deploys and other apps' deploys keep theirs.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Deploy } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { DeployLogs, KEPT_DEPLOY_LOGS } from "./deploy-log.ts";
import { finishedDeploys } from "./release-history.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-deploy-log-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("prune keeps the logs of an app's newest finished deploys, and every running one", async () => {
  assert.equal(new DeployLogs(join(dir, "default")).keepPerApp, KEPT_DEPLOY_LOGS);
  const store = new MemoryStore();
  const logs = new DeployLogs(join(dir, "small"), { keepPerApp: 2 });
  const deploy = async (app: string, id: string, minute: number, state: Deploy["state"]) => {
    const d: Deploy = {
      id,
      tenant: "default",
      app,
      state,
      createdAt: `2026-01-01T00:0${minute}:00.000Z`,
      message: "",
    };
    await store.put("deploy", `default/${app}/${id}`, d);
    logs.append(id, "build", `build of ${id}`);
  };
  await deploy("shop", "d1", 1, "succeeded");
  await deploy("shop", "d2", 2, "failed");
  await deploy("shop", "d3", 3, "building"); // running: kept whatever its age
  await deploy("shop", "d4", 4, "succeeded");
  await deploy("shop", "d5", 5, "succeeded");
  await deploy("blog", "b1", 0, "succeeded");
  logs.prune((await finishedDeploys(store, "default", "shop")).map((o) => o.value));
  const kept = ["d1", "d2", "d3", "d4", "d5", "b1"].filter((id) => logs.has(id));
  assert.deepEqual(kept, ["d3", "d4", "d5", "b1"]);
  assert.deepEqual(logs.read("d1"), []);
  assert.equal(logs.read("d5")[0]?.message, "build of d5");
});
