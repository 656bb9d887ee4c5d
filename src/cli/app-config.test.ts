// `herd config …` against a real control plane: set keys and files, get,
// list with origins, history, diff, rollback, a refused file, the catalog.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall } from "../api/testing.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-config-"));

before(async () => {
  server = await startServer({ dataDir: join(dir, "data"), port: 0, logger: silentLogger });
  await apiCall(server, "POST", "/apps", { name: "shop" });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const herd = (...argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken, cwd: dir });

test("herd config: set, get, list with origins, history, diff, rollback; a bad file is refused", async () => {
  assert.match((await herd("config", "--app", "shop")).out, /shop has no config yet/);
  const yaml = join(dir, "app.yaml");
  writeFileSync(yaml, "pool: 4\nname: shop\n");
  const set = await herd(
    "config",
    "set",
    "GREETING=hello",
    "--file",
    `app.yaml=${yaml}`,
    "-m",
    "first",
    "--app",
    "shop",
  );
  assert.equal(set.code, 0, set.err);
  assert.match(set.out, /shop config is now v1\./);
  assert.match(set.out, /as env at their next start: herd restart --app shop/);
  assert.equal((await herd("config", "get", "GREETING", "--app", "shop")).out, "hello\n");
  assert.equal((await herd("config", "get", "app.yaml", "--app", "shop")).out, "pool: 4\nname: shop\n");
  const missing = await herd("config", "get", "NOPE", "--app", "shop");
  assert.equal(missing.code, 1);

  writeFileSync(yaml, "pool: [4\n");
  const bad = await herd("config", "set", "--file", `app.yaml=${yaml}`, "--app", "shop");
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /app\.yaml: not valid YAML.*running version stays/);

  await herd("config", "set", "GREETING=bonjour", "--app", "shop");
  const list = await herd("config", "list", "--app", "shop");
  assert.match(list.out, /shop config v2/);
  assert.match(list.out, /GREETING\s+bonjour\s+app v2/);
  assert.match(list.out, /app\.yaml\s+<yaml file, 19 bytes>\s+app v2/);
  const history = await herd("config", "history", "--app", "shop");
  assert.match(history.out, /v2\s+\*\s+user admin/);
  assert.match(history.out, /v1\s+user admin.*first/);
  const diff = await herd("config", "diff", "--app", "shop");
  assert.match(diff.out, /~ GREETING: hello → bonjour/);
  const rb = await herd("config", "rollback", "1", "--app", "shop");
  assert.equal(rb.code, 0, rb.err);
  assert.match(rb.out, /now v3, with the content of v1/);
  assert.equal((await herd("config", "get", "GREETING", "--app", "shop")).out, "hello\n");
  // Said once: the rollback's own message is the default one.
  const after = (await herd("config", "history", "--app", "shop")).out;
  assert.match(after, /v3\s+\*\s+user admin\s+\S+ ago\s+\d+\s+rollback to v1\n/);
  assert.match((await herd("config", "status", "--app", "shop")).out, /stable v3[\s\S]*No running instances/);
});

test("herd config: the catalog's layers and an app that picks them", async () => {
  const base = await herd("config", "set", "TZ=UTC", "--layer", "platform", "--name", "base");
  assert.equal(base.code, 0, base.err);
  assert.match(base.out, /platform base config is now v1/);
  assert.match((await herd("config", "catalog")).out, /platform\s+base\s+v1/);
  const use = await herd("config", "use", "--platform", "base@1", "--app", "shop");
  assert.equal(use.code, 0, use.err);
  assert.match((await herd("config", "--app", "shop")).out, /TZ\s+UTC\s+platform base@1/);
  const wrong = await herd("config", "promote", "--layer", "platform", "--name", "base");
  assert.equal(wrong.code, 2);

  // base@2 in gray release to the default tenant, then rolled back.
  assert.equal((await herd("config", "set", "TZ=CET", "--layer", "platform", "--name", "base")).code, 0);
  const gray = await herd("config", "catalog-gray", "platform", "base@2", "--tenants", "default");
  assert.equal(gray.code, 0, gray.err);
  assert.match(gray.out, /default\/shop: platform base@1 → @2 \(config v\d+\)/);
  assert.match((await herd("config", "--app", "shop")).out, /TZ\s+CET\s+platform base@2/);
  const back = await herd(
    "config",
    "catalog-gray",
    "platform",
    "base@2",
    "--tenants",
    "default",
    "--rollback",
  );
  assert.equal(back.code, 0, back.err);
  assert.match(back.out, /default\/shop: platform base@2 → @1/);
  assert.equal((await herd("config", "catalog-gray", "platform", "base")).code, 2);
});
