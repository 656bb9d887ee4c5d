// `herd routes` and `herd gateways` against the real control plane.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { testService } from "../gateway/testing.ts";
import { runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-live-"));

before(async () => {
  server = await startServer({ dataDir: join(dir, "server"), port: 0, logger: silentLogger });
  await server.store.put("app", "default/shop", {
    tenant: "default",
    name: "shop",
    createdAt: new Date().toISOString(),
    release: 1,
    latestVersion: 1,
  });
  const web = testService("default", "shop", "web", [{ host: "shop.localhost" }]);
  await server.store.put("service", "default/shop/web", {
    ...web,
    instances: 0,
    spec: { ...web.spec, instances: 0 },
  });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const herd = (...argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken, cwd: dir });

test("herd routes set / list / delete, and herd gateways", async () => {
  const set = await herd(
    "routes",
    "set",
    "shop",
    "beta",
    "--service",
    "web",
    "--host",
    "beta.localhost",
    "--rate",
    "5",
  );
  assert.equal(set.code, 0, set.err);
  assert.match(set.out, /Route beta of shop: beta\.localhost\/ → web \(revision \d+\)/);

  writeFileSync(join(dir, "route.yaml"), "service: web\nhost: beta.localhost\npath: /v2\nrewrite: /\n");
  const fromFile = await herd("routes", "set", "shop", "beta", "-f", "route.yaml");
  assert.equal(fromFile.code, 0, fromFile.err);

  const list = await herd("routes", "shop");
  assert.equal(list.code, 0, list.err);
  const lines = list.out.trim().split("\n");
  assert.match(lines[0], /^NAME\s+SOURCE\s+SERVICE\s+HOST\s+PATH\s+POLICIES\s+REVISION$/);
  assert.match(lines[1], /^-\s+herd\.yaml\s+web\s+shop\.localhost\s+\/\s+-\s+-$/);
  assert.match(lines[2], /^beta\s+api\s+web\s+beta\.localhost\s+\/v2\s+rewrite \/\s+\d+$/);

  const bad = await herd(
    "routes",
    "set",
    "shop",
    "gamma",
    "--service",
    "web",
    "--host",
    "g.localhost",
    "--per",
    "user",
  );
  assert.equal(bad.code, 1);
  assert.match(bad.err, /rateLimit\.per/);
  const clash = await herd("routes", "set", "shop", "gamma", "--service", "web", "--host", "shop.localhost");
  assert.equal(clash.code, 1);
  assert.match(clash.err, /already served by shop\/web/);
  const stale = await herd("routes", "delete", "shop", "beta", "--revision", "1");
  assert.equal(stale.code, 1);
  assert.match(stale.err, /changed since revision 1/);

  const deleted = await herd("routes", "delete", "shop", "beta");
  assert.equal(deleted.code, 0, deleted.err);
  assert.doesNotMatch((await herd("routes", "shop")).out, /beta/);

  await fetch(`${server.url}/api/v1/gateways/edge-1/status`, {
    method: "PUT",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ version: 1, applied: false, error: "route x: host: bad", serving: 0, routes: 1 }),
  });
  const gateways = await herd("gateways");
  assert.equal(gateways.code, 0, gateways.err);
  assert.match(
    gateways.out,
    /^ID\s+URL\s+VERSION\s+CONFIG\s+IN SYNC\s+ROUTES\s+WORKERS\s+LAST SEEN\s+ERROR\n/,
  );
  assert.match(gateways.out, /edge-1\s+-\s+0\s+\d+\s+refused v1\s+1\s+-\s+0s ago\s+route x: host: bad/);
});
