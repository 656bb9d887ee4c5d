/**
 * PostgreSQL from Debian's packages: where its binaries are (installing the
 * package when missing, without a cluster or a boot service), the source of
 * the pet app that runs one server, and the SQL that makes a binding's role
 * and database.
 */

import { execFile, spawnSync } from "node:child_process";
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  writeFileSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { HerdError } from "../common/errors.ts";
import { LISTEN_ADDRESSES, PUSH_LOOP, postgresCollect, writePostgresMetricsSql } from "./metrics.ts";

const run = promisify(execFile);
const ROOT = "/usr/lib/postgresql";
const NEEDED = ["postgres", "initdb", "psql", "pg_isready"];

/** The newest /usr/lib/postgresql/<v>/bin that has every binary herd uses, or undefined. */
export function findPostgresBin(root = ROOT): string | undefined {
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(root, v, "bin");
    if (NEEDED.every((b) => existsSync(join(bin, b)))) return bin;
  }
  return undefined;
}

/** libnss_wrapper.so: gives initdb and postgres a passwd entry for the tenant's uid, which /etc/passwd lacks. */
export function findNssWrapper(): string | undefined {
  for (const dir of ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]) {
    const lib = join(dir, "libnss_wrapper.so");
    if (existsSync(lib)) return lib;
  }
  return undefined;
}

/** Debian's libnss-wrapper (a library, no service): installed when missing. */
function ensureNssWrapper(): string {
  const found = findNssWrapper();
  if (found) return found;
  const r = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", "libnss-wrapper"], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  const lib = findNssWrapper();
  if (!lib)
    throw new HerdError(
      "unavailable",
      `libnss_wrapper.so is missing and apt-get install libnss-wrapper failed (${r.error?.message ?? `exit ${r.status}`}); install Debian's libnss-wrapper`,
    );
  return lib;
}

/** The bin dir of PostgreSQL and the nss_wrapper library, installing what is missing (ensurePostgresBin). */
export async function ensurePostgres(): Promise<{ bin: string; nssWrapper: string }> {
  const bin = await ensurePostgresBin();
  return { bin, nssWrapper: ensureNssWrapper() };
}

/**
 * The bin dir of PostgreSQL, installing Debian's `postgresql` when it is
 * missing: with /etc/postgresql-common/createcluster.conf saying
 * `create_main_cluster = false` (no cluster made by the postinst) and
 * ensureDebianPackages' policy-rc.d (nothing started, boot links disabled).
 * Fails naming what is missing when it cannot install.
 */
async function ensurePostgresBin(): Promise<string> {
  const found = findPostgresBin();
  if (found) return found;
  try {
    const conf = "/etc/postgresql-common/createcluster.conf";
    if (!existsSync(conf)) {
      mkdirSync("/etc/postgresql-common", { recursive: true });
      writeFileSync(conf, "create_main_cluster = false\n");
    }
    const { ensureDebianPackages } = await import("../common/debian-packages.ts");
    await ensureDebianPackages({ pg_ctlcluster: "postgresql" });
  } catch (err) {
    throw new HerdError(
      "unavailable",
      `PostgreSQL is missing (${NEEDED.join(", ")} under ${ROOT}/<version>/bin) and could not be installed: ${(err as Error).message}; install Debian's postgresql package`,
    );
  }
  const bin = findPostgresBin();
  if (!bin)
    throw new HerdError(
      "unavailable",
      `PostgreSQL installed but ${NEEDED.join(", ")} not found under ${ROOT}`,
    );
  return bin;
}

/** The files of the add-on's app: herd.yaml (one pet service) and the script that inits and runs the server. */
export function postgresSource(
  dir: string,
  o: { name: string; bin: string; nssWrapper: string; units: number; maxConnections: number },
): void {
  writeFileSync(
    join(dir, "herd.yaml"),
    `app: ${o.name}
services:
  db:
    command: sh start.sh
    instances: 1
    mode: pet
    resources: { units: ${o.units} }
    health: { tcp: true, startup: 60 }
    env:
      PG_BIN: ${o.bin}
      NSS_WRAPPER_LIB: ${o.nssWrapper}
      PG_MAX_CONNECTIONS: "${o.maxConnections}"
      ADDON_PASSWORD: { secret: ADDON_PASSWORD }
`,
  );
  writePostgresMetricsSql(dir, o.name);
  writeFileSync(
    join(dir, "start.sh"),
    `# A PostgreSQL server in the pet's data dir: initdb on first start, then run on $PORT.
set -eu
${PUSH_LOOP}${postgresCollect(o.name)}${LISTEN_ADDRESSES}
PGDATA="$HERD_DATA_DIR/pgdata"
# The tenant's uid has no /etc/passwd entry, which initdb and postgres need: nss_wrapper gives it one.
export NSS_WRAPPER_PASSWD="$HERD_DATA_DIR/.passwd" NSS_WRAPPER_GROUP="$HERD_DATA_DIR/.group"
echo "herd:x:$(id -u):$(id -g):herd:$HERD_DATA_DIR:/bin/false" > "$NSS_WRAPPER_PASSWD"
echo "herd:x:$(id -g):" > "$NSS_WRAPPER_GROUP"
export LD_PRELOAD="$NSS_WRAPPER_LIB"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  rm -rf "$PGDATA.init"
  pw="$HERD_DATA_DIR/.pw"
  umask 077
  printf %s "$ADDON_PASSWORD" > "$pw"
  "$PG_BIN/initdb" -D "$PGDATA.init" -U herd --pwfile="$pw" -A scram-sha-256 -E UTF8 --locale=C.UTF-8
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA.init/pg_hba.conf"
  echo "host all all ::/0 scram-sha-256" >> "$PGDATA.init/pg_hba.conf"
  mv "$PGDATA.init" "$PGDATA"
fi
# The metrics loop outlives this shell (double fork) and ends with the server ($$ once exec'd).
( addon_metrics_loop $$ & )
exec "$PG_BIN/postgres" -D "$PGDATA" -p "$PORT" -c listen_addresses="$(echo $listen | tr ' ' ,)" \\
  -c unix_socket_directories='' \\
  -c max_connections="$PG_MAX_CONNECTIONS" -c logging_collector=off
`,
  );
}

/** A SQL identifier or literal for herd-made names and hex passwords (checked, then quoted). */
function safe(s: string): string {
  if (!/^[a-z0-9_]+$/.test(s)) throw new Error(`unsafe name ${s}`);
  return s;
}

async function psql(bin: string, endpoint: string, password: string, sql: string): Promise<void> {
  const [host, port] = splitEndpoint(endpoint);
  await run(
    join(bin, "psql"),
    ["-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", "herd", "-d", "postgres", "-c", sql],
    {
      env: { PGPASSWORD: password, PGCONNECT_TIMEOUT: "5", PATH: process.env.PATH ?? "" },
      timeout: 30_000,
    },
  );
}

export function splitEndpoint(endpoint: string): [string, string] {
  const i = endpoint.lastIndexOf(":");
  return [endpoint.slice(0, i), endpoint.slice(i + 1)];
}

/** Makes (or re-passwords) the binding's role and its database, owned by it. */
export async function provisionBinding(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string; database: string; password: string },
): Promise<void> {
  const user = safe(b.user);
  const pw = safe(b.password);
  await psql(
    bin,
    endpoint,
    admin,
    `DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '${user}') THEN ALTER ROLE ${user} LOGIN PASSWORD '${pw}'; ELSE CREATE ROLE ${user} LOGIN PASSWORD '${pw}'; END IF; END $$;`,
  );
  const db = safe(b.database);
  try {
    await psql(bin, endpoint, admin, `CREATE DATABASE ${db} OWNER ${user}`);
  } catch (err) {
    if (!/already exists/.test(String((err as { stderr?: string }).stderr ?? err))) throw err;
  }
}

/**
 * A new login for a binding (credential rotation): a role of its own that is
 * a member of the binding's role and acts as it (SET role), so what it
 * creates is owned like before. The old login keeps working until revoked.
 */
export async function addLogin(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string; login: string; password: string },
): Promise<void> {
  const [user, login, pw] = [safe(b.user), safe(b.login), safe(b.password)];
  await psql(
    bin,
    endpoint,
    admin,
    `CREATE ROLE ${login} LOGIN PASSWORD '${pw}' IN ROLE ${user}; ALTER ROLE ${login} SET role = '${user}'`,
  );
}

/** Revokes an old login: the binding's own role loses LOGIN, a rotation's role is dropped; its sessions end. */
export async function revokeLogin(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string; login: string },
): Promise<void> {
  const login = safe(b.login);
  await psql(
    bin,
    endpoint,
    admin,
    login === safe(b.user) ? `ALTER ROLE ${login} NOLOGIN PASSWORD NULL` : `DROP ROLE IF EXISTS ${login}`,
  );
  await psql(
    bin,
    endpoint,
    admin,
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${login}'`,
  );
}

/** Makes each role that does not exist, without LOGIN (a restored database's owner; attach gives it a password). */
export async function ensureRoles(
  bin: string,
  endpoint: string,
  admin: string,
  roles: string[],
): Promise<void> {
  for (const r of new Set(roles.map(safe)))
    await psql(
      bin,
      endpoint,
      admin,
      `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${r}') THEN CREATE ROLE ${r} NOLOGIN; END IF; END $$;`,
    );
}

/** Drops the binding's database and role (detach), and the login of its last rotation. */
export async function dropBinding(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string; database: string; login?: string },
): Promise<void> {
  await psql(bin, endpoint, admin, `DROP DATABASE IF EXISTS ${safe(b.database)} WITH (FORCE)`);
  if (b.login && b.login !== b.user) await psql(bin, endpoint, admin, `DROP ROLE IF EXISTS ${safe(b.login)}`);
  await psql(bin, endpoint, admin, `DROP ROLE IF EXISTS ${safe(b.user)}`);
}

/** Waits until the server at endpoint accepts connections. */
export async function waitReady(bin: string, endpoint: string, timeoutMs: number): Promise<void> {
  const [host, port] = splitEndpoint(endpoint);
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await run(join(bin, "pg_isready"), ["-h", host, "-p", port, "-t", "2"]);
      return;
    } catch (err) {
      if (Date.now() > until)
        throw new HerdError("unavailable", `postgres at ${endpoint} is not ready: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

export const databaseUrl = (
  b: { user: string; database: string; password: string },
  endpoint: string,
): string => `postgres://${b.user}:${b.password}@${endpoint}/${b.database}`;

/**
 * Writes a dump of each database (with DROP/CREATE DATABASE) to `file`:
 * pg_dump --clean --create. Each goes to a file of its own beside `file` and
 * is streamed into it, so a large database never sits in herd's memory.
 */
export async function dumpDatabases(
  bin: string,
  endpoint: string,
  admin: string,
  databases: string[],
  file: string,
): Promise<void> {
  const [host, port] = splitEndpoint(endpoint);
  const out = createWriteStream(file, { mode: 0o600 });
  try {
    for (const [i, db] of databases.entries()) {
      const part = `${file}.${i}`;
      await run(
        join(bin, "pg_dump"),
        [
          "-h",
          host,
          "-p",
          port,
          "-U",
          "herd",
          "--clean",
          "--if-exists",
          "--create",
          "-d",
          safe(db),
          "-f",
          part,
        ],
        {
          env: { PGPASSWORD: admin, PGCONNECT_TIMEOUT: "5", PATH: process.env.PATH ?? "" },
          timeout: 600_000,
        },
      );
      await pipeline(createReadStream(part), out, { end: false });
      out.write("\n");
      await rm(part, { force: true });
    }
  } finally {
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }
}

/** Runs a dump made by dumpDatabases: each database is dropped (its connections ended) and made again. */
export async function restoreDump(
  bin: string,
  endpoint: string,
  admin: string,
  databases: string[],
  file: string,
): Promise<void> {
  for (const db of databases)
    await psql(
      bin,
      endpoint,
      admin,
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${safe(db)}'`,
    );
  const [host, port] = splitEndpoint(endpoint);
  await run(
    join(bin, "psql"),
    ["-v", "ON_ERROR_STOP=1", "-q", "-h", host, "-p", port, "-U", "herd", "-d", "postgres", "-f", file],
    {
      env: { PGPASSWORD: admin, PGCONNECT_TIMEOUT: "5", PATH: process.env.PATH ?? "" },
      maxBuffer: 1 << 28,
      timeout: 600_000,
    },
  );
}
