// `herd consumers …` against a real control plane: create, list, add a key
// (printed once), JWT credentials, show, remove, delete, and usage errors.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { hashToken } from "../api/auth.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Consumer } from "../model/objects.ts";
import { runCli } from "./test-api.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-cli-consumers-"));

before(async () => {
  server = await startServer({ dataDir: join(dir, "data"), port: 0, logger: silentLogger });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const herd = (...argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken, cwd: dir });

test("herd consumers: create, keys add prints the key once, jwt add, show, remove, delete", async () => {
  assert.match((await herd("consumers")).out, /No consumers/);
  const created = await herd("consumers", "create", "mobile");
  assert.equal(created.code, 0, created.err);
  assert.match(created.out, /Created consumer mobile/);

  const added = await herd("consumers", "keys", "add", "mobile");
  assert.equal(added.code, 0, added.err);
  const key = added.out.trim().split("\n").at(-1) ?? "";
  assert.match(key, /^hk_/);
  const stored = await server.store.get<Consumer>("consumer", "default/mobile");
  assert.equal(stored?.value.keys[0].hash, hashToken(key), "the printed key is the one stored (hashed)");

  const pemFile = join(dir, "key.pem");
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(pemFile, publicKey.export({ type: "spki", format: "pem" }));
  const rs = await herd(
    "consumers",
    "jwt",
    "add",
    "mobile",
    "--key",
    "mobile-app",
    "--algorithm",
    "RS256",
    "--public-key",
    pemFile,
  );
  assert.equal(rs.code, 0, rs.err);
  assert.match(rs.out, /RS256, tokens with "iss": "mobile-app"/);
  const hs = await herd("consumers", "jwt", "add", "mobile");
  assert.match(hs.out, /Secret \(shown only now\):\n\S{32,}/);

  const list = await herd("consumers");
  assert.match(
    list.out,
    /^NAME\s+API KEYS\s+JWT\s+CREATED\nmobile\s+1\s+mobile-app \(RS256\), \S+ \(HS256\)/,
  );
  const shown = await herd("consumers", "show", "mobile");
  assert.match(shown.out, /api key\s+\S+\s+hk_/);
  assert.ok(!shown.out.includes(key), "show never prints the key");

  const keyId = stored?.value.keys[0].id ?? "";
  assert.match((await herd("consumers", "keys", "remove", "mobile", keyId)).out, /Removed API key/);
  const missing = await herd("consumers", "keys", "remove", "mobile", keyId);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /no API key/);

  const badAlg = await herd("consumers", "jwt", "add", "mobile", "--algorithm", "ES256");
  assert.equal(badAlg.code, 2);
  assert.match(badAlg.err, /--algorithm must be HS256 or RS256/);
  const secretFile = join(mkdtempSync(join(tmpdir(), "herd-secret-")), "hs256");
  writeFileSync(secretFile, "short\n", { mode: 0o600 });
  const badSecret = await herd("consumers", "jwt", "add", "mobile", "--secret-file", secretFile);
  rmSync(dirname(secretFile), { recursive: true, force: true });
  assert.equal(badSecret.code, 1);
  assert.match(badSecret.err, /body\.secret/);
  assert.equal((await herd("consumers", "frob")).code, 2);
  assert.equal((await herd("consumers", "create", "mobile")).code, 1, "a taken name");

  assert.match((await herd("consumers", "delete", "mobile")).out, /Deleted consumer mobile/);
  assert.match((await herd("consumers")).out, /No consumers/);
});
