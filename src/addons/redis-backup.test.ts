// Redis backups against a real redis-server on loopback: an RDB snapshot
// taken while it runs, then changes, then the restore puts every database
// back as the snapshot had it, without restarting the server.

import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { findBinary } from "../../scripts/ensure-tools.ts";
import { keyspace, redisDump, redisRestore } from "./redis-backup.ts";

const run = promisify(execFile);
const server = findBinary("redis-server");
const cliBin = findBinary("redis-cli");

test("keyspace reads INFO keyspace", () => {
  const info = "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb3:keys=1,expires=1,avg_ttl=9\r\n";
  assert.deepEqual(
    [...keyspace(info)],
    [
      [0, 3],
      [3, 1],
    ],
  );
});

test("an RDB snapshot restores every database of a running server", {
  skip: !server || !cliBin,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-redis-bk-"));
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const admin = "s3cret-admin";
  writeFileSync(join(dir, "users.acl"), `user default on >${admin} ~* &* +@all\n`, { mode: 0o600 });
  const child = spawn(
    server as string,
    ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--aclfile", join(dir, "users.acl")],
    { stdio: "ignore" },
  );
  t.after(() => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  const endpoint = `127.0.0.1:${port}`;
  const r = async (...args: string[]) =>
    (
      await run(cliBin as string, ["-h", "127.0.0.1", "-p", String(port), "--no-auth-warning", ...args], {
        env: { REDISCLI_AUTH: admin, PATH: process.env.PATH ?? "" },
      })
    ).stdout.trim();
  for (let i = 0; i < 50; i++) {
    if ((await r("PING").catch(() => "")) === "PONG") break;
    await new Promise((res) => setTimeout(res, 100));
  }
  await r("SET", "greeting", "hello");
  await r("RPUSH", "list", "a", "b", "c");
  await r("-n", "3", "HSET", "user:1", "name", "ada");
  await r("MSET", ...Array.from({ length: 450 }, (_, i) => [`k${i}`, String(i)]).flat());

  const file = join(dir, "backup.rdb");
  await redisDump(cliBin as string, endpoint, admin, file);
  assert.ok(statSync(file).size > 0);

  await r("SET", "greeting", "changed");
  await r("DEL", "list");
  await r("SET", "added-after", "1");
  await r("-n", "3", "FLUSHDB");

  const { keys } = await redisRestore(
    { server: server as string, cli: cliBin as string },
    endpoint,
    admin,
    file,
  );
  assert.equal(keys, 453);
  assert.equal(await r("GET", "greeting"), "hello");
  assert.equal(await r("LRANGE", "list", "0", "-1"), "a\nb\nc");
  assert.equal(await r("EXISTS", "added-after"), "0");
  assert.equal(await r("GET", "k449"), "449");
  assert.equal(await r("-n", "3", "HGET", "user:1", "name"), "ada");

  // A wrong admin password: the restore fails and says so.
  await assert.rejects(
    redisRestore({ server: server as string, cli: cliBin as string }, endpoint, "wrong", file),
    /WRONGPASS|NOAUTH|AUTH/,
  );
});
