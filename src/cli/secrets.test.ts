// `herd secrets …` against a real control plane: set from a file, list
// without values, unset, rotate-key, and the value never taken from argv.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-secrets-"));

before(async () => {
  server = await startServer({ dataDir: join(dir, "data"), port: 0, logger: silentLogger });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const herd = (...argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken, cwd: dir });

test("herd secrets: set from a file, list shows no value, unset, rotate-key", async () => {
  assert.match((await herd("secrets", "--app", "shop")).out, /shop has no secrets/);
  const file = join(dir, "pw.txt");
  writeFileSync(file, "correct horse battery staple\n");
  const set = await herd("secrets", "set", "db-password", "--app", "shop", "--from-file", file);
  assert.equal(set.code, 0, set.err);
  assert.match(set.out, /Set secret db-password of shop: version 1\./);
  assert.equal(
    await server.secrets.value("default", "shop", "db-password"),
    "correct horse battery staple\n",
    "a file's content is kept exactly",
  );

  const list = await herd("secrets", "list", "--app", "shop");
  assert.equal(list.code, 0, list.err);
  assert.match(list.out, /db-password\s+v1\s+user admin/);
  assert.ok(!list.out.includes("horse"));
  const json = await herd("--json", "secrets", "--app", "shop");
  assert.ok(!json.out.includes("horse"));
  assert.equal(JSON.parse(json.out).items[0].version, 1);

  const rotated = await herd("secrets", "rotate-key");
  assert.equal(rotated.code, 0, rotated.err);
  assert.match(rotated.out, /1 versions of 1 secrets re-encrypted; 1 old key removed/);
  assert.equal(
    await server.secrets.value("default", "shop", "db-password"),
    "correct horse battery staple\n",
  );

  const unset = await herd("secrets", "unset", "db-password", "--app", "shop");
  assert.equal(unset.code, 0, unset.err);
  assert.match(unset.out, /Unset secret db-password of shop/);
  const again = await herd("secrets", "unset", "db-password", "--app", "shop");
  assert.notEqual(again.code, 0);
  assert.match(again.err, /has no secret db-password/);
});

test("herd secrets set refuses a value on the command line, and a missing file says which", async () => {
  const argv = await herd("secrets", "set", "token", "hunter2", "--app", "shop");
  assert.equal(argv.code, 2);
  assert.match(argv.err, /never taken from the command line/);
  const heroku = await herd("secrets", "set", "token=hunter2", "--app", "shop");
  assert.equal(heroku.code, 2, "NAME=VALUE as Heroku's config:set takes it");
  assert.match(heroku.err, /never taken from the command line.*herd secrets set token\)/);
  assert.doesNotMatch(heroku.err, /hunter2/, "the value is not echoed");
  assert.equal(await server.secrets.info("default", "shop", "token"), undefined);
  const missing = await herd("secrets", "set", "token", "--app", "shop", "--from-file", join(dir, "nope"));
  assert.notEqual(missing.code, 0);
  assert.match(missing.err, /cannot read .*nope: ENOENT/);
  const bad = await herd("secrets", "set", "9bad", "--app", "shop", "--from-file", join(dir, "pw.txt"));
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /params\.name/);
});
