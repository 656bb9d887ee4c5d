// An app's deploy history through the real control plane: who made each
// deploy and release is recorded as it is made (deploy, rollback, a secret's
// change); the list answers state, release, who, when, duration and error; a
// deploy's log is read until it is no longer kept.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { normalizeService } from "../model/manifest.ts";
import type { Deploy, Release } from "../model/objects.ts";
import type { DeployView } from "./routes/deploys.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-deploys-api-"));

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
});
after(async () => {
  await server.close();
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

/** A deploy through the controllers, as made before deploys recorded who made them (build skipped, no instances). */
async function oldDeploy(app: string, fail = false): Promise<Deploy> {
  const d = await server.controllers.deploys.startDeploy("default", app, async (log) => {
    log("building the test slug");
    if (fail) throw new Error("the build failed: test");
    return {
      source: "b".repeat(64),
      slug: "a".repeat(64),
      services: {
        web: normalizeService(
          app,
          "web",
          { command: "node server.js", instances: 0, env: { KEY: { secret: "api-key" } } },
          undefined,
        ),
      },
      description: "test",
    };
  });
  return finished(app, d.id);
}

test("deploys record who made them; the history lists them newest first; logs read until pruned", async () => {
  assert.equal((await call("POST", "/apps", { name: "shop" })).status, 201);
  assert.equal((await call("PUT", "/apps/shop/secrets/api-key", { value: "one-value-long" })).status, 201);
  const d1 = await oldDeploy("shop");
  assert.equal(d1.state, "succeeded", d1.message);
  const failed = await oldDeploy("shop", true);
  assert.equal(failed.state, "failed");
  const d2 = await oldDeploy("shop");

  // A rollback by the admin, then a secret change by a deployer: both make releases and record who.
  const rolled = await call("POST", "/apps/shop/rollback", {});
  assert.equal(rolled.status, 202, JSON.stringify(rolled.body));
  assert.equal(rolled.body.createdBy, "user admin");
  assert.equal((await call("POST", "/users", { name: "carol" })).status, 201);
  assert.equal((await call("PUT", "/tenants/default/members/carol", { role: "deployer" })).status, 200);
  const carol = (await call("POST", "/tokens", { name: "carol's laptop", user: "carol" })).body
    .token as string;
  const changed = await call("PUT", "/apps/shop/secrets/api-key", { value: "two-value-long" }, carol);
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.equal(changed.body.deploy.createdBy, "user carol");
  await finished("shop", changed.body.deploy.id);

  const releases = (await call("GET", "/apps/shop/releases")).body.items as Release[];
  assert.deepEqual(
    releases.map((r) => [r.version, r.createdBy]),
    [
      [4, "user carol"],
      [3, "user admin"],
      [2, undefined],
      [1, undefined],
    ],
  );

  const list = await call("GET", "/apps/shop/deploys");
  assert.equal(list.status, 200);
  const items = list.body.items as DeployView[];
  assert.deepEqual(
    items.map((d) => [d.id, d.state, d.release ?? null, d.createdBy ?? null, d.rollback === true, d.log]),
    [
      [changed.body.deploy.id, "succeeded", 4, "user carol", false, true],
      [rolled.body.id, "succeeded", 3, "user admin", true, true],
      [d2.id, "succeeded", 2, null, false, true],
      [failed.id, "failed", null, null, false, true],
      [d1.id, "succeeded", 1, null, false, true],
    ],
  );
  assert.equal(items[3].message, "the build failed: test", "a failed deploy says why");
  assert.ok(items.every((d) => typeof d.durationMs === "number" && d.durationMs >= 0));
  assert.equal(list.body.total, 5);
  assert.equal(list.body.logsKept, 20);
  const one = await call("GET", "/apps/shop/deploys?limit=1");
  assert.deepEqual(
    [one.body.items.length, one.body.items[0].id, one.body.total],
    [1, changed.body.deploy.id, 5],
  );
  const bad = await call("GET", "/apps/shop/deploys?limit=0");
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /limit/);
  assert.equal((await call("GET", "/apps/nope/deploys")).status, 404);

  // The failed deploy's log: its build output and the done entry, as NDJSON.
  const res = await fetch(`${server.url}/api/v1/apps/shop/deploys/${failed.id}/log`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  const entries = (await res.text())
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    entries.map((e) => [e.type, e.message]),
    [
      ["build", "building the test slug"],
      ["done", "the build failed: test"],
    ],
  );
  // A log no longer kept (pruned, here removed by hand) is 410, not a stream that never ends.
  rmSync(join(dir, "deploys", `${d1.id}.ndjson`));
  const gone = await call("GET", `/apps/shop/deploys/${d1.id}/log`);
  assert.equal(gone.status, 410);
  assert.match(gone.body.message, /no longer kept/);
  assert.equal((await call("GET", "/apps/shop/deploys?limit=5")).body.items[4].log, false);
});
