import assert from "node:assert/strict";
import { test } from "node:test";
import type { Addon, AddonBackup } from "../model/addon.ts";
import { backupDue, checkBackupPolicy, finalBindings, keptBackups } from "./backups.ts";

const addon = (o: Partial<Addon> = {}): Addon => ({
  tenant: "t",
  name: "db",
  kind: "postgres",
  plan: "small",
  createdAt: "2026-12-01T00:00:00.000Z",
  bindings: [],
  ...o,
});
const at = (iso: string) => Date.parse(iso);

test("a scheduled backup is due once per time the schedule fired since the last one, not per missed time", () => {
  assert.equal(backupDue(addon(), at("2026-12-03T12:00:00Z")), undefined, "no policy: never");
  const a = addon({
    backupPolicy: { schedule: "0 3 * * *", keep: 7 },
    lastScheduledAt: "2026-12-01T10:00:00.000Z",
  });
  // Before 03:00 of the next day: not due.
  assert.equal(backupDue(a, at("2026-12-02T02:59:00Z")), undefined);
  // After it: due at 03:00.
  assert.equal(backupDue(a, at("2026-12-02T03:00:30Z")), at("2026-12-02T03:00:00Z"));
  // Taken (lastScheduledAt moved to the due time): not due again the same day.
  const taken = { ...a, lastScheduledAt: "2026-12-02T03:00:00.000Z" };
  assert.equal(backupDue(taken, at("2026-12-02T20:00:00Z")), undefined);
  // A server down for three days: one backup, at the latest time.
  assert.equal(backupDue(taken, at("2026-12-05T09:00:00Z")), at("2026-12-05T03:00:00Z"));
});

test("backups kept: the newest `keep`, final and detach ones never dropped", () => {
  const b = (id: string, reason: AddonBackup["reason"] = "scheduled"): AddonBackup => ({
    id,
    createdAt: "2026-12-01T00:00:00.000Z",
    digest: `sha256:${id}`,
    size: 1,
    databases: [],
    reason,
  });
  const list = [b("f", "final"), b("1"), b("d", "detach"), b("2"), b("3")];
  assert.deepEqual(
    keptBackups(list, b("4"), 2).map((x) => x.id),
    ["f", "d", "3", "4"],
  );
  assert.equal(keptBackups([], b("1"), undefined).length, 1);
});

test("a backup policy is checked: the cron and keep name their field", () => {
  assert.deepEqual(checkBackupPolicy({ schedule: "0 3 * * *", keep: 7 }), { schedule: "0 3 * * *", keep: 7 });
  assert.throws(
    () => checkBackupPolicy({ schedule: "every day", keep: 7 }),
    (err: { details?: { field: string }[] }) => err.details?.[0]?.field === "backup.schedule",
  );
  assert.throws(
    () => checkBackupPolicy({ schedule: "0 3 * * *", keep: 0 }),
    (err: { details?: { field: string }[] }) => err.details?.[0]?.field === "backup.keep",
  );
});

test("a destroy's final backup holds the bound databases and those still waiting for a detach's drop", () => {
  const a: Addon = {
    tenant: "t",
    name: "db",
    kind: "postgres",
    plan: "small",
    createdAt: "",
    bindings: [{ app: "notes", var: "DATABASE_URL", user: "u_notes", database: "db_notes", createdAt: "" }],
    detached: [
      { app: "reports", var: "DATABASE_URL", user: "u_reports", database: "db_reports", since: "" },
      { app: "old", var: "DATABASE_URL", user: "u_old", database: "db_old", since: "", withoutBackup: true },
    ],
  };
  assert.deepEqual(
    finalBindings(a).map((b) => [b.app, b.database]),
    [
      ["notes", "db_notes"],
      ["reports", "db_reports"],
    ],
  );
});
