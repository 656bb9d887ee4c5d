/**
 * Add-on backups by kind, and when a scheduled one is due.
 *
 *   postgres ─► pg_dump of each bound database (SQL)     restore: each database dropped and made again
 *   redis    ─► an RDB snapshot (redis-cli --rdb)         restore: redis-backup.ts (no restart)
 *   both     ─► the file into the artifact store (sha256), an AddonBackup on the add-on
 *
 * Scheduled: the server's add-on timer asks `backupDue` each pass; a backup is
 * due when the schedule fired after the last one it took (or after the
 * policy was set), so a server that was down takes one backup, not one per
 * missed time.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ArtifactStore } from "../builder/artifact-store.ts";
import { invalid } from "../common/errors.ts";
import { newId } from "../common/ids.ts";
import { type Addon, type AddonBackup, type AddonBackupPolicy, DEFAULT_BACKUP_KEEP } from "../model/addon.ts";
import { cronProblem, lastFire } from "../model/job.ts";
import { dumpDatabases, ensurePostgres, ensureRoles, restoreDump } from "./postgres.ts";
import { ensureRedis } from "./redis.ts";
import { redisDump, redisRestore } from "./redis-backup.ts";

/** The most backups a policy keeps. */
export const MAX_KEEP = 100;

/**
 * What a destroy's final backup holds: the bound databases, and those of
 * detached apps still waiting for their drop (their detach backup, if taken,
 * goes with the add-on), unless detached `--without-backup`.
 */
export const finalBindings = (a: Addon): { app: string; database: string }[] => [
  ...a.bindings,
  ...(a.detached ?? []).filter((d) => !d.withoutBackup),
];

/** Dumps the add-on's data into the artifact store (postgres: the bound databases, or `databases`). */
export async function dumpAddon(
  a: Addon,
  endpoint: string,
  admin: string,
  artifacts: ArtifactStore,
  databases = a.bindings.map((b) => b.database),
): Promise<Pick<AddonBackup, "digest" | "size" | "databases" | "format">> {
  const dir = await mkdtemp(join(tmpdir(), "herd-addon-backup-"));
  try {
    const file = join(dir, "backup");
    if (a.kind === "redis") {
      await redisDump((await ensureRedis()).cli, endpoint, admin, file);
      const stored = await artifacts.putFile(file);
      return { digest: stored.digest, size: stored.size, databases: [], format: "rdb" };
    }
    await dumpDatabases((await ensurePostgres()).bin, endpoint, admin, databases, file);
    const stored = await artifacts.putFile(file);
    return { digest: stored.digest, size: stored.size, databases, format: "pg_dump" };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Puts the add-on's data back as `backup` has it. */
export async function restoreAddon(
  a: Addon,
  endpoint: string,
  admin: string,
  backup: AddonBackup,
  artifacts: ArtifactStore,
): Promise<void> {
  const file = await artifacts.path(backup.digest);
  if ((backup.format ?? "pg_dump") === "rdb") {
    if (a.kind !== "redis")
      throw invalid(`backup ${backup.id} is a Redis snapshot; ${a.name} is ${a.kind}`, [
        { field: "id", message: "another kind's backup" },
      ]);
    await redisRestore(await ensureRedis(), endpoint, admin, file);
    return;
  }
  if (a.kind !== "postgres")
    throw invalid(`backup ${backup.id} is a PostgreSQL dump; ${a.name} is ${a.kind}`, [
      { field: "id", message: "another kind's backup" },
    ]);
  const { bin } = await ensurePostgres();
  // Into a new add-on (create --from-backup) the databases' owners do not exist yet: the dump names them.
  await ensureRoles(bin, endpoint, admin, backup.databases.map(ownerOf));
  await restoreDump(bin, endpoint, admin, backup.databases, file);
}

/** The role that owns a binding's database: db_<app> belongs to u_<app> (addons.ts makes both). */
export const ownerOf = (database: string): string => `u_${database.replace(/^db_/, "")}`;

/** A policy checked: a cron expression croner takes, keep from 1 to MAX_KEEP. */
export function checkBackupPolicy(p: AddonBackupPolicy, at = "backup"): AddonBackupPolicy {
  const problem = cronProblem(p.schedule);
  if (problem) throw invalid(`${at}.schedule: ${problem}`, [{ field: `${at}.schedule`, message: problem }]);
  if (!Number.isInteger(p.keep) || p.keep < 1 || p.keep > MAX_KEEP)
    throw invalid(`${at}.keep: an integer from 1 to ${MAX_KEEP}`, [
      { field: `${at}.keep`, message: `an integer from 1 to ${MAX_KEEP}` },
    ]);
  return { schedule: p.schedule, keep: p.keep };
}

/** The time (ms) a scheduled backup of `a` fell due and has not been taken, or undefined. */
export function backupDue(a: Addon, now: number): number | undefined {
  if (!a.backupPolicy) return undefined;
  const since = Date.parse(a.lastScheduledAt ?? a.createdAt);
  const due = lastFire(a.backupPolicy.schedule, since + 1, now);
  return due;
}

/** A backup of what dumpAddon stored, taken now for `reason` (detach: of `app`'s database). */
export function newBackup(
  dumped: Pick<AddonBackup, "digest" | "size" | "databases" | "format">,
  reason: NonNullable<AddonBackup["reason"]>,
  app?: string,
): AddonBackup {
  return { id: newId(8), createdAt: new Date().toISOString(), ...dumped, reason, ...(app ? { app } : {}) };
}

/** The add-on with `backup` in its list, and the backups `keep` no longer holds gone. */
export const withBackup = (a: Addon, backup: AddonBackup): Addon => ({
  ...a,
  backups: keptBackups(a.backups ?? [], backup, a.backupPolicy?.keep),
});

/** Backups `keep` never drops: a destroy's final one, and a detached app's database (gone from the server). */
const keptForGood = (b: AddonBackup): boolean => b.reason === "final" || b.reason === "detach";

/** The backups kept once `added` is taken: the newest `keep` of the others. */
export function keptBackups(
  list: AddonBackup[],
  added: AddonBackup,
  keep: number | undefined,
): AddonBackup[] {
  const all = [...list, added];
  const limit = keep ?? DEFAULT_BACKUP_KEEP;
  const droppable = all.filter((b) => !keptForGood(b));
  const drop = new Set(droppable.slice(0, Math.max(0, droppable.length - limit)));
  return all.filter((b) => !drop.has(b));
}
