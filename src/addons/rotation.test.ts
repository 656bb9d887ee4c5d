import assert from "node:assert/strict";
import { test } from "node:test";
import { deployKey } from "../controllers/deploy-controller.ts";
import type { Deploy, Instance } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { revokeStep, rolloutUnderway } from "./rotation.ts";

const deploy = (state: Deploy["state"]): Deploy => ({
  id: "d2",
  tenant: "t",
  app: "counter",
  state,
  release: 2,
  createdAt: new Date(0).toISOString(),
  message: "",
});

const instance = (id: string, release: number, state: Instance["state"]) =>
  ({ id, tenant: "t", app: "counter", service: "web", release, state }) as Instance;

test("old credentials wait for the deploy, then for every older release's instance to be gone", async () => {
  const store = new MemoryStore();
  const underway = () => rolloutUnderway(store, "t", "counter", "d2");
  await store.put("deploy", deployKey({ tenant: "t", app: "counter", id: "d2" }), deploy("rolling_out"));
  assert.equal(await underway(), true);

  await store.put("deploy", deployKey({ tenant: "t", app: "counter", id: "d2" }), deploy("succeeded"));
  await store.put("instance", "new", instance("new", 2, "running"));
  await store.put("instance", "old", instance("old", 1, "draining"));
  await store.put("instance", "other", { ...instance("other", 1, "running"), app: "another" });
  assert.equal(await underway(), true, "v1's instance still drains: it may hold a request with the old URL");

  await store.put("instance", "old", instance("old", 1, "stopped"));
  assert.equal(await underway(), false);
  assert.equal(
    await rolloutUnderway(store, "t", "counter", undefined),
    false,
    "no deploy: nothing to wait for",
  );
  assert.equal(await rolloutUnderway(store, "t", "counter", "gone"), false);
});

test("a revoke between the new URL and its release waits: the old instances still use the old credentials", () => {
  const since = new Date(0).toISOString();
  // CI: the timer revoked the old password in this window, and the running instance answered NOAUTH.
  assert.equal(revokeStep({ since }, 1000), "wait");
  assert.equal(revokeStep({ since, afterDeploy: "d2" }, 1000), "rolled-out?");
  assert.equal(revokeStep({ since, released: true }, 1000), "rolled-out?", "no release to roll out");
  assert.equal(revokeStep({ since }, 91_000), "release", "a crash left it without its release: made now");
});
