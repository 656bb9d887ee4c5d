/**
 * Redis add-on backups: an RDB snapshot taken over the replication protocol
 * (`redis-cli --rdb`, the server keeps running), and its restore without
 * restarting the add-on's server:
 *
 *   restore ─► a throwaway redis-server on 127.0.0.1 loads the RDB (no AOF, no saves)
 *           ─► FLUSHALL on the add-on's server
 *           ─► every key MIGRATEd (COPY REPLACE) from the throwaway server, database by database
 *           ─► key counts compared per database (a key redis-cli cannot name fails the restore loudly)
 *           ─► the throwaway server stopped, its dir removed
 *
 * Users (the ACL file) are not part of a backup: bindings keep their accounts.
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { HerdError } from "../common/errors.ts";
import { freePort } from "../common/free-port.ts";
import { splitEndpoint } from "./postgres.ts";

const run = promisify(execFile);
/** Keys moved per MIGRATE. */
const BATCH = 200;

async function cli(
  bin: string,
  endpoint: string,
  auth: string | undefined,
  args: string[],
  timeout = 60_000,
): Promise<string> {
  const [host, port] = splitEndpoint(endpoint);
  const { stdout } = await run(bin, ["-h", host, "-p", port, "--no-auth-warning", ...args], {
    env: { ...(auth !== undefined ? { REDISCLI_AUTH: auth } : {}), PATH: process.env.PATH ?? "" },
    timeout,
    maxBuffer: 1 << 28,
  });
  if (/^(ERR|WRONGPASS|NOAUTH|IOERR)/m.test(stdout))
    throw new Error(`redis-cli ${args[0]}: ${stdout.trim()}`);
  return stdout;
}

/** Writes an RDB snapshot of the server at `endpoint` to `file`. */
export async function redisDump(bin: string, endpoint: string, admin: string, file: string): Promise<void> {
  await cli(bin, endpoint, admin, ["--rdb", file], 600_000);
}

/** Keys per database, from INFO keyspace. */
export function keyspace(info: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of info.matchAll(/^db(\d+):keys=(\d+)/gm)) out.set(Number(m[1]), Number(m[2]));
  return out;
}

/** Replaces the data of the server at `endpoint` with the snapshot in `file`. */
export async function redisRestore(
  bins: { server: string; cli: string },
  endpoint: string,
  admin: string,
  file: string,
): Promise<{ keys: number }> {
  const dir = await mkdtemp(join(tmpdir(), "herd-redis-restore-"));
  let child: ChildProcess | undefined;
  try {
    // redis-server loads the RDB its --dir/--dbfilename name at start.
    await copyFile(file, join(dir, "restore.rdb"));
    const port = await freePort();
    const source = `127.0.0.1:${port}`;
    child = spawn(
      bins.server,
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--dbfilename",
        "restore.rdb",
        "--appendonly",
        "no",
        "--save",
        "",
        "--daemonize",
        "no",
      ],
      { stdio: "ignore" },
    );
    await waitPing(bins.cli, source, 15_000, child);
    const want = keyspace(await cli(bins.cli, source, undefined, ["INFO", "keyspace"]));
    const [host, targetPort] = splitEndpoint(endpoint);
    await cli(bins.cli, endpoint, admin, ["FLUSHALL"]);
    let moved = 0;
    for (const [db] of want) {
      const names = (await cli(bins.cli, source, undefined, ["-n", String(db), "--scan"]))
        .split("\n")
        .filter((k) => k !== "");
      for (let i = 0; i < names.length; i += BATCH) {
        const keys = names.slice(i, i + BATCH);
        await cli(bins.cli, source, undefined, [
          "-n",
          String(db),
          "MIGRATE",
          host,
          targetPort,
          "",
          String(db),
          "30000",
          "COPY",
          "REPLACE",
          "AUTH2",
          "default",
          admin,
          "KEYS",
          ...keys,
        ]);
        moved += keys.length;
      }
    }
    const got = keyspace(await cli(bins.cli, endpoint, admin, ["INFO", "keyspace"]));
    for (const [db, n] of want)
      if (got.get(db) !== n)
        throw new HerdError(
          "internal",
          `restore: database ${db} has ${got.get(db) ?? 0} keys after the restore, the backup ${n}`,
        );
    return { keys: moved };
  } finally {
    child?.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
}

async function waitPing(bin: string, endpoint: string, ms: number, child: ChildProcess): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new HerdError("internal", "restore: redis-server did not start");
    try {
      if ((await cli(bin, endpoint, undefined, ["PING"], 2000)).trim() === "PONG") return;
    } catch (err) {
      if (Date.now() > until)
        throw new HerdError("unavailable", `restore: redis-server did not answer: ${(err as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
