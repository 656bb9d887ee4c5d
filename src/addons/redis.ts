/**
 * Redis from Debian's packages (redis-server, redis-tools): the source of
 * the pet app that runs one server (append-only file and ACL file in its
 * data dir), and the ACL users of bindings. Bindings have users of their
 * own but share the server's keyspace.
 */

import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { findBinary } from "../common/debian-packages.ts";
import { HerdError } from "../common/errors.ts";
import { LISTEN_ADDRESSES, PUSH_LOOP, redisCollect } from "./metrics.ts";
import { splitEndpoint } from "./postgres.ts";

const run = promisify(execFile);

/** redis-server and redis-cli, installing Debian's packages when missing (nothing started, no boot service). */
export async function ensureRedis(): Promise<{ server: string; cli: string }> {
  const server = findBinary("redis-server");
  const cli = findBinary("redis-cli");
  if (server && cli) return { server, cli };
  try {
    const { ensureDebianPackages } = await import("../common/debian-packages.ts");
    const found = await ensureDebianPackages({ "redis-server": "redis-server", "redis-cli": "redis-tools" });
    return { server: found["redis-server"] as string, cli: found["redis-cli"] as string };
  } catch (err) {
    throw new HerdError(
      "unavailable",
      `Redis is missing (redis-server, redis-cli) and could not be installed: ${(err as Error).message}; install Debian's redis-server and redis-tools`,
    );
  }
}

export function redisSource(
  dir: string,
  o: { name: string; server: string; cli: string; units: number; maxConnections: number },
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
      REDIS_SERVER: ${o.server}
      REDIS_CLI: ${o.cli}
      REDIS_MAX_CLIENTS: "${o.maxConnections}"
      ADDON_PASSWORD: { secret: ADDON_PASSWORD }
`,
  );
  writeFileSync(
    join(dir, "start.sh"),
    `# A Redis server in the pet's data dir on $PORT: users in users.acl (the admin is "default"), data in the AOF.
set -eu
${PUSH_LOOP}${redisCollect(o.name)}${LISTEN_ADDRESSES}umask 077
acl="$HERD_DATA_DIR/users.acl"
[ -s "$acl" ] || printf 'user default on >%s ~* &* +@all\\n' "$ADDON_PASSWORD" > "$acl"
# The node's addresses are optional ("-"): one that cannot be bound does not stop the server.
bind="127.0.0.1"
for a in \${listen#127.0.0.1}; do bind="$bind -$a"; done
# The metrics loop outlives this shell (double fork) and ends with the server ($$ once exec'd).
( addon_metrics_loop $$ & )
exec "$REDIS_SERVER" --port "$PORT" --bind $bind --protected-mode no --dir "$HERD_DATA_DIR" \\
  --aclfile "$acl" --appendonly yes --maxclients "$REDIS_MAX_CLIENTS" --daemonize no --logfile ""
`,
  );
}

async function cli(bin: string, endpoint: string, admin: string, args: string[]): Promise<string> {
  const [host, port] = splitEndpoint(endpoint);
  const { stdout } = await run(bin, ["-h", host, "-p", port, "--no-auth-warning", ...args], {
    env: { REDISCLI_AUTH: admin, PATH: process.env.PATH ?? "" },
    timeout: 15_000,
  });
  if (/^(ERR|WRONGPASS|NOAUTH)/m.test(stdout)) throw new Error(`redis-cli ${args[0]}: ${stdout.trim()}`);
  return stdout;
}

export async function redisReady(
  bin: string,
  endpoint: string,
  admin: string,
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await cli(bin, endpoint, admin, ["PING"])).trim() === "PONG") return;
    } catch (err) {
      if (Date.now() > until)
        throw new HerdError("unavailable", `redis at ${endpoint} is not ready: ${(err as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

export async function redisProvision(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string; password: string },
): Promise<void> {
  await cli(bin, endpoint, admin, [
    "ACL",
    "SETUSER",
    b.user,
    "reset",
    "on",
    `>${b.password}`,
    "~*",
    "&*",
    "+@all",
  ]);
  await cli(bin, endpoint, admin, ["ACL", "SAVE"]);
}

export async function redisDrop(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string },
): Promise<void> {
  await cli(bin, endpoint, admin, ["ACL", "DELUSER", b.user]);
  await cli(bin, endpoint, admin, ["ACL", "SAVE"]);
}

export const redisUrl = (b: { user: string; password: string }, endpoint: string): string =>
  `redis://${b.user}:${b.password}@${endpoint}/0`;

/** Rotation: a second password for the binding's user (the old one works until revoked). */
export async function redisAddPassword(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string; password: string },
): Promise<void> {
  await cli(bin, endpoint, admin, ["ACL", "SETUSER", b.user, `>${b.password}`]);
  await cli(bin, endpoint, admin, ["ACL", "SAVE"]);
}

/** Revokes an old password by its SHA-256 (hex): herd never keeps the password itself. */
export async function redisRevokePassword(
  bin: string,
  endpoint: string,
  admin: string,
  b: { user: string; passwordSha256: string },
): Promise<void> {
  await cli(bin, endpoint, admin, ["ACL", "SETUSER", b.user, `!${b.passwordSha256}`]);
  await cli(bin, endpoint, admin, ["ACL", "SAVE"]);
}
