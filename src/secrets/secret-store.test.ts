import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { isCode } from "../common/errors.ts";
import { MemoryStore } from "../store/memory-store.ts";
import { SqliteStore } from "../store/sqlite-store.ts";
import { KEY_FILE } from "./keyring.ts";
import { KEEP_VERSIONS, type SecretObject, SecretStore } from "./secret-store.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "herd-secrets-"));
  dirs.push(dir);
  return dir;
}

const keyFile = (dir: string) => JSON.parse(readFileSync(join(dir, KEY_FILE), "utf8"));

test("a secret round-trips; the store and the listing hold no value", async () => {
  const dir = tempDir();
  const store = new MemoryStore();
  const secrets = await SecretStore.open(store, dir);
  const info = await secrets.set("t1", "shop", "db-password", "hunter2-very-secret", "alice");
  assert.equal(info.version, 1);
  assert.equal(info.updatedBy, "alice");
  assert.equal(await secrets.value("t1", "shop", "db-password"), "hunter2-very-secret");
  assert.deepEqual(
    (await secrets.list("t1", "shop")).map((s) => [s.name, s.version]),
    [["db-password", 1]],
  );
  const raw = JSON.stringify((await store.list("secret")).items);
  assert.ok(!raw.includes("hunter2"), "the stored object holds ciphertext only");
  assert.equal(statSync(join(dir, KEY_FILE)).mode & 0o777, 0o600);
  // A second start reads the same key.
  const again = await SecretStore.open(store, dir);
  assert.equal(await again.value("t1", "shop", "db-password"), "hunter2-very-secret");
  await store.close();
});

test("tampering is detected: a changed byte, a ciphertext moved to another secret, a swapped key id", async () => {
  const dir = tempDir();
  const store = new MemoryStore();
  const secrets = await SecretStore.open(store, dir);
  await secrets.set("t1", "shop", "a", "value-of-a", "alice");
  await secrets.set("t1", "shop", "b", "value-of-b", "alice");
  const a = (await store.get<SecretObject>("secret", "t1/shop/a"))!;
  const b = (await store.get<SecretObject>("secret", "t1/shop/b"))!;
  const rewrite = async (key: string, value: SecretObject) => {
    const cur = (await store.get("secret", key))!;
    await store.put("secret", key, value, { expectRevision: cur.revision });
  };

  const box = Buffer.from(a.value.versions[0]!.box, "base64");
  box[box.length - 20]! ^= 1;
  await rewrite(a.key, { ...a.value, versions: [{ ...a.value.versions[0]!, box: box.toString("base64") }] });
  await assert.rejects(secrets.value("t1", "shop", "a"), /integrity check/);

  // b's ciphertext under a's name: the AAD (key and version) does not match.
  await rewrite(a.key, { ...a.value, versions: [{ ...b.value.versions[0]! }] });
  await assert.rejects(secrets.value("t1", "shop", "a"), /integrity check/);

  await rewrite(a.key, { ...a.value, versions: [{ ...a.value.versions[0]!, keyId: "knot-a-key" }] });
  await assert.rejects(secrets.value("t1", "shop", "a"), /key knot-a-key is not in/);

  await rewrite(a.key, a.value);
  assert.equal(await secrets.value("t1", "shop", "a"), "value-of-a");
  await store.close();
});

test("versions: older ones stay readable up to KEEP_VERSIONS; unset leaves a tombstone, versions go on", async () => {
  const store = new MemoryStore();
  const secrets = await SecretStore.open(store, tempDir());
  for (let n = 1; n <= KEEP_VERSIONS + 2; n++) await secrets.set("t1", "shop", "token", `value-${n}`, "bob");
  assert.equal(await secrets.value("t1", "shop", "token", 3), "value-3");
  assert.equal(await secrets.value("t1", "shop", "token"), `value-${KEEP_VERSIONS + 2}`);
  await assert.rejects(
    secrets.value("t1", "shop", "token", 2),
    (err) => isCode(err, "not_found") && /version 2 of secret token is no longer kept/.test(String(err)),
  );
  assert.equal((await secrets.unset("t1", "shop", "token", "carol"))?.version, KEEP_VERSIONS + 2);
  assert.deepEqual(await secrets.list("t1", "shop"), []);
  await assert.rejects(secrets.value("t1", "shop", "token", 3), /secret token is not set/);
  assert.equal(await secrets.unset("t1", "shop", "token", "carol"), undefined);
  const again = await secrets.set("t1", "shop", "token", "fresh", "dave");
  assert.equal(again.version, KEEP_VERSIONS + 3, "a version number is never handed out twice");
  assert.equal(await secrets.value("t1", "shop", "token"), "fresh");
  await store.close();
});

test("rotate-key re-encrypts every version with a new key and drops the old one", async () => {
  const dir = tempDir();
  const store = new MemoryStore();
  const secrets = await SecretStore.open(store, dir);
  for (let n = 0; n < 5; n++) {
    await secrets.set("t1", "shop", `s${n}`, `first-${n}`, "alice");
    await secrets.set("t1", "shop", `s${n}`, `second-${n}`, "alice");
  }
  const before = secrets.keyId;
  const result = await secrets.rotateKey();
  assert.notEqual(result.keyId, before);
  assert.deepEqual(result.droppedKeys, [before]);
  assert.equal(result.secrets, 5);
  assert.equal(result.reencrypted, 10);
  assert.deepEqual(Object.keys(keyFile(dir).keys), [result.keyId]);
  for (const o of (await store.list<SecretObject>("secret")).items) {
    assert.ok(o.value.versions.every((v) => v.keyId === result.keyId));
  }
  for (let n = 0; n < 5; n++) {
    assert.equal(await secrets.value("t1", "shop", `s${n}`, 1), `first-${n}`);
    assert.equal(await secrets.value("t1", "shop", `s${n}`), `second-${n}`);
  }
  await store.close();
});

test("a rotation that fails midway loses nothing; the next start finishes it", async () => {
  const dir = tempDir();
  const store = new MemoryStore();
  const secrets = await SecretStore.open(store, dir);
  for (let n = 0; n < 6; n++) await secrets.set("t1", "shop", `s${n}`, `value-${n}`, "alice");
  const old = secrets.keyId;
  await assert.rejects(
    secrets.rotateKey((done) => {
      if (done === 3) throw new Error("disk full");
    }),
    /disk full/,
  );
  assert.equal(Object.keys(keyFile(dir).keys).length, 2, "both keys are kept until every secret moved");
  for (let n = 0; n < 6; n++) assert.equal(await secrets.value("t1", "shop", `s${n}`), `value-${n}`);
  const restarted = await SecretStore.open(store, dir);
  assert.notEqual(restarted.keyId, old);
  assert.deepEqual(Object.keys(keyFile(dir).keys), [restarted.keyId]);
  for (let n = 0; n < 6; n++) assert.equal(await restarted.value("t1", "shop", `s${n}`), `value-${n}`);
  await store.close();
});

test("kill -9 during a rotation: every secret still opens, and the next start completes the rotation", async () => {
  const dir = tempDir();
  const db = join(dir, "state.db");
  const store = SqliteStore.open(db);
  const secrets = await SecretStore.open(store, dir);
  for (let n = 0; n < 40; n++) await secrets.set("t1", "shop", `s${n}`, `value-${n}`, "alice");
  await store.close();

  // A real process rotates, slowly, and is killed after it has written some secrets.
  const script = `
    import { SqliteStore } from ${JSON.stringify(new URL("../store/sqlite-store.ts", import.meta.url).pathname)};
    import { SecretStore } from ${JSON.stringify(new URL("./secret-store.ts", import.meta.url).pathname)};
    const store = SqliteStore.open(${JSON.stringify(db)});
    const secrets = await SecretStore.open(store, ${JSON.stringify(dir)});
    await secrets.rotateKey(async (done) => {
      process.stdout.write(done + "\\n");
      await new Promise((r) => setTimeout(r, 20));
    });
    process.stdout.write("finished\\n");
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk;
        if (out.split("\n").includes("10")) {
          child.kill("SIGKILL");
          resolve();
        }
        if (out.includes("finished")) reject(new Error("the rotation finished before the kill"));
      });
      child.once("exit", () => resolve());
    });
  } finally {
    child.kill("SIGKILL");
  }
  await new Promise((resolve) =>
    child.exitCode !== null || child.signalCode ? resolve(null) : child.once("exit", resolve),
  );

  const ids = Object.keys(keyFile(dir).keys);
  assert.equal(ids.length, 2, "killed midway, the file has the old and the new key");
  const reopened = SqliteStore.open(db);
  try {
    const mixed = new Set(
      (await reopened.list<SecretObject>("secret")).items.map((o) => o.value.versions[0]!.keyId),
    );
    assert.equal(mixed.size, 2, "some secrets moved to the new key, some not yet");
    const restarted = await SecretStore.open(reopened, dir);
    assert.deepEqual(Object.keys(keyFile(dir).keys), [restarted.keyId]);
    for (let n = 0; n < 40; n++) assert.equal(await restarted.value("t1", "shop", `s${n}`), `value-${n}`);
  } finally {
    await reopened.close();
  }
});
