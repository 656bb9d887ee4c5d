// Add-ons end to end (a Redis add-on likewise, with REDIS_URL): `herd addons create postgres --app notes` runs a real
// PostgreSQL server (Debian's packages) as a pet app of the tenant; the app
// gets DATABASE_URL as a secret in a new release, writes a row and reads it
// back, also after the server's process is killed and restarted in place
// (the binding's URL follows it). Bad input: an unknown plan (400 naming the
// field and the plans), another tenant's add-on (403), destroy without
// confirmation (400), an unknown add-on (404).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensurePostgres } from "../../src/addons/postgres.ts";
import { ensureRedis } from "../../src/addons/redis.ts";
import type { Addon } from "../../src/model/addon.ts";
import type { Instance, Release } from "../../src/model/objects.ts";
import { cleanupHerd, gatewaysInSync, type Herd, served, startHerd, waitFor } from "./harness.ts";
import { deployNotes as deployApp, deployCounter, putNote } from "./notes-app.ts";

let herd: Herd;
let bin: string;
const work = mkdtempSync(join(tmpdir(), "herd-addons-e2e-"));
const HOST = "notes.localhost";

before(async () => {
  bin = (await ensurePostgres()).bin;
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

const put = (path: string, host = HOST) => putNote(herd, path, host);
const deployNotes = (app: string, host: string) => deployApp(herd, work, app, host, bin);

test("an app writes to its Postgres add-on and reads it back, also after the server restarts", async () => {
  await deployNotes("notes", HOST);
  // The app's own 503 (not the gateway's 404 from before it has the route, a moment after the deploy).
  let before = { status: 0, body: "" };
  await waitFor("the app to answer without its database", async () => {
    before = await herd.request(HOST, "/notes");
    return before.body === "no DATABASE_URL";
  });
  assert.equal(before.status, 503, before.body);

  const c = await herd.cli(["addons", "create", "postgres", "--app", "notes"], { timeoutMs: 180_000 });
  assert.equal(c.code, 0, c.stdout + c.stderr + herd.output().slice(-3000));
  assert.match(c.stdout, /Created postgres add-on notes-postgres \(plan small\)\. notes gets DATABASE_URL/);

  const wrote = await waitFor(
    "the new release with DATABASE_URL to answer",
    async () => {
      const r = await put("/notes?text=first");
      return r.status === 200 ? r : undefined;
    },
    120_000,
  );
  assert.equal(wrote.body, "first");
  // The release without DATABASE_URL drains: the gateway drops it a moment after the new one answers.
  await served(herd, HOST, "first", "/notes");

  const info = await herd.api<Addon & { state: string }>("GET", "/addons/notes-postgres");
  assert.equal(info.body.state, "running");
  assert.deepEqual(
    info.body.bindings.map((b) => [b.app, b.var, b.database]),
    [["notes", "DATABASE_URL", "db_notes"]],
  );
  const list = await herd.cli(["addons", "list"]);
  assert.match(list.stdout, /notes-postgres\s+postgres\s+small\s+notes/);

  // The server's process dies: the agent restarts the pet in place with its data dir; the URL follows its port.
  const pet = (
    await herd.api<{ items: Instance[] }>("GET", "/apps/notes-postgres/instances")
  ).body.items.find((i) => i.desired === "running");
  assert.ok(pet?.pid, JSON.stringify(pet));
  process.kill(pet.pid, "SIGKILL");
  const restarted = await waitFor(
    "the restarted server",
    async () => {
      const i = (
        await herd.api<{ items: Instance[] }>("GET", "/apps/notes-postgres/instances")
      ).body.items.find((x) => x.id === pet.id);
      return i?.state === "running" && i.pid !== pet.pid ? i : undefined;
    },
    90_000,
  );
  let last = { status: 0, body: "" };
  const again = await waitFor(
    "the app writing again after the restart",
    async () => {
      last = await put("/notes?text=second");
      return last.status === 200 ? last : undefined;
    },
    120_000,
  ).catch(async (err: Error) => {
    // What herd did meanwhile: the add-on's and the app's events, the last answer, herd's log.
    const events = async (app: string) =>
      (
        await herd.api<{ items: { reason: string; message: string }[] }>("GET", `/events?app=${app}&limit=50`)
      ).body.items
        .map((e) => `${e.reason}: ${e.message}`)
        .join("\n");
    throw new Error(
      `${err.message}; port ${pet.port} → ${restarted.port}; last answer ${last.status} ${last.body}\n` +
        `notes-postgres events:\n${await events("notes-postgres")}\nnotes events:\n${await events("notes")}\n` +
        `herd up:\n${herd.output().slice(-4000)}`,
    );
  });
  assert.equal(again.body, "first,second");
  if (restarted.port !== pet.port) {
    // It came back on another port: the binding's URL followed it (a new release of notes).
    const events = (
      await herd.api<{ items: { reason: string; message: string }[] }>("GET", "/events?app=notes&limit=200")
    ).body.items;
    assert.ok(
      events.some((e) => e.reason === "AddonMoved" && e.message.endsWith(`:${restarted.port}`)),
      JSON.stringify(events.map((e) => e.reason)),
    );
  }

  // A backup, a write after it, a restore: the write is gone.
  const bk = await herd.cli(["addons", "backup", "notes-postgres", "--json"], { timeoutMs: 120_000 });
  assert.equal(bk.code, 0, bk.stdout + bk.stderr);
  const backupId = (JSON.parse(bk.stdout) as { id: string; databases: string[] }).id;
  assert.equal((await put("/notes?text=third")).body, "first,second,third");
  const listed = await herd.cli(["addons", "backups", "notes-postgres"]);
  assert.match(listed.stdout, new RegExp(`${backupId}\\s.*db_notes`));
  const rs = await herd.cli(["addons", "restore", "notes-postgres", backupId], { timeoutMs: 120_000 });
  assert.equal(rs.code, 0, rs.stdout + rs.stderr);
  // After a move, the release with the old URL drains: the gateway drops it a moment later.
  await served(herd, HOST, "first,second", "/notes");

  // Rotation: new credentials in a new release; the old login is revoked once it has rolled out,
  // and the app keeps its data (the new login acts as the binding's role).
  const rot = await herd.cli(["addons", "rotate", "notes-postgres", "--app", "notes"], {
    timeoutMs: 120_000,
  });
  assert.equal(rot.code, 0, rot.stdout + rot.stderr);
  assert.match(
    rot.stdout,
    /notes: new credentials, deploy \S+ rolls them out; the old ones are revoked after/,
  );
  await waitFor(
    "the old credentials revoked",
    async () => {
      const a = (await herd.api<Addon>("GET", "/addons/notes-postgres")).body;
      const b = a.bindings.find((x) => x.app === "notes");
      return b?.login === "u_notes_r1" && !b.revoke ? true : undefined;
    },
    180_000,
  );
  // The old login goes once the rollout is done in the store; each gateway drops the old instances a moment later.
  await gatewaysInSync(herd);
  assert.equal((await put("/notes?text=fourth")).body, "first,fourth,second");
  // The binding is written first, its event a moment later (addons/rotation.ts).
  await waitFor("an AddonRevoked event", async () =>
    (await herd.api<{ items: { reason: string }[] }>("GET", "/events?app=notes&limit=200")).body.items.some(
      (e) => e.reason === "AddonRevoked",
    ),
  );

  // A second app bound to the same server gets a database of its own; detached, it loses its URL.
  const OTHER = "reports.localhost";
  await deployNotes("reports", OTHER);
  const att = await herd.cli(["addons", "attach", "notes-postgres", "--app", "reports"], {
    timeoutMs: 120_000,
  });
  assert.equal(att.code, 0, att.stdout + att.stderr);
  const theirs = await waitFor(
    "reports writing to its own database",
    async () => {
      const r = await put("/notes?text=other", OTHER);
      return r.status === 200 ? r : undefined;
    },
    120_000,
  );
  assert.equal(theirs.body, "other");
  assert.equal((await herd.request(HOST, "/notes")).body, "first,fourth,second");
  const det = await herd.cli(["addons", "detach", "notes-postgres", "--app", "reports"], {
    timeoutMs: 120_000,
  });
  assert.equal(det.code, 0, det.stdout + det.stderr);
  assert.match(
    det.stdout,
    /its URL goes with deploy \S+;.*\(backed up first: `herd addons backups notes-postgres`\)/,
  );
  // Until the release without the URL has rolled out, its database stays: the running instance uses it.
  // (the old instance drains for 2 s at least after its replacement runs: the drop cannot have come yet).
  const pending = (await herd.api<Addon>("GET", "/addons/notes-postgres")).body.detached ?? [];
  assert.deepEqual(
    pending.map((d) => [d.app, d.database]),
    [["reports", "db_reports"]],
  );
  const reattach = await herd.api("POST", "/addons/notes-postgres/attach", { app: "reports" });
  assert.equal(reattach.status, 409, JSON.stringify(reattach.body));
  await waitFor(
    "reports without DATABASE_URL",
    async () => ((await herd.request(OTHER, "/notes")).status === 503 ? true : undefined),
    120_000,
  );
  const reportsEvents = async () =>
    (await herd.api<{ items: { reason: string; message: string }[] }>("GET", "/events?app=reports&limit=200"))
      .body.items;
  await waitFor(
    "reports' database dropped once its release rolled out",
    async () => ((await reportsEvents()).some((e) => e.reason === "AddonDatabaseDropped") ? true : undefined),
    60_000,
  );
  const afterDrop = (await herd.api<Addon>("GET", "/addons/notes-postgres")).body;
  assert.deepEqual(afterDrop.detached ?? [], []);
  assert.equal((await herd.request(HOST, "/notes")).body, "first,fourth,second", "notes keeps its data");
  // The drop came after a backup of that database: attached again, reports gets it back with a restore.
  const kept = (afterDrop.backups ?? []).find((b) => b.reason === "detach");
  assert.deepEqual([kept?.app, kept?.databases], ["reports", ["db_reports"]]);
  const reattached = await herd.cli(["addons", "attach", "notes-postgres", "--app", "reports"], {
    timeoutMs: 120_000,
  });
  assert.equal(reattached.code, 0, reattached.stdout + reattached.stderr);
  await waitFor(
    "reports on a new, empty database",
    async () => {
      const r = await herd.request(OTHER, "/notes");
      return r.status === 200 && r.body === "" ? true : undefined;
    },
    120_000,
  );
  const back = await herd.cli(["addons", "restore", "notes-postgres", kept?.id ?? ""], {
    timeoutMs: 120_000,
  });
  assert.equal(back.code, 0, back.stdout + back.stderr);
  await served(herd, OTHER, "other", "/notes");
  assert.equal((await herd.request(HOST, "/notes")).body, "first,fourth,second", "notes untouched by it");
  // keep never drops a detach backup: a person deletes it.
  const del = await herd.cli(["addons", "backups", "notes-postgres", "delete", kept?.id ?? ""]);
  assert.equal(del.code, 0, del.stdout + del.stderr);
  const left = await herd.cli(["addons", "backups", "notes-postgres"]);
  assert.doesNotMatch(left.stdout, new RegExp(kept?.id ?? "-"));
  const twice = await herd.api("DELETE", `/addons/notes-postgres/backups/${kept?.id}`);
  assert.equal(twice.status, 404);
  const noId = await herd.cli(["addons", "backups", "notes-postgres", "delete"]);
  assert.notEqual(noId.code, 0);
  assert.match(noId.stderr, /needs one backup id/);

  // Detach: the URL goes with a new release; destroy needs the name.
  const refused = await herd.cli(["addons", "destroy", "notes-postgres"]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /--confirm notes-postgres/);
  const noConfirm = await herd.api("DELETE", "/addons/notes-postgres");
  assert.equal(noConfirm.status, 400);
  const gone = await herd.cli(["addons", "destroy", "notes-postgres", "--confirm", "notes-postgres"], {
    timeoutMs: 120_000,
  });
  assert.equal(gone.code, 0, gone.stdout + gone.stderr);
  assert.match(
    gone.stdout,
    /Its final backup \S+ \(db_notes, db_reports, \d+ bytes\) is kept as artifact [0-9a-f]{64}\./,
  );
  assert.equal((await herd.api("GET", "/addons/notes-postgres")).status, 404);
  await waitFor(
    "the app without DATABASE_URL",
    async () => ((await herd.request(HOST, "/notes")).status === 503 ? true : undefined),
    120_000,
  );
});

test("a Redis add-on gives its app REDIS_URL with a user of its own", async () => {
  const { cli } = await ensureRedis();
  await deployCounter(herd, work, "counter", "counter.localhost", cli);
  const c = await herd.cli(["addons", "create", "redis", "--app", "counter", "--name", "cache"], {
    timeoutMs: 180_000,
  });
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /Created redis add-on cache \(plan small\)\. counter gets REDIS_URL/);
  const first = await waitFor(
    "counter counting in redis",
    async () => {
      const r = await herd.request("counter.localhost", "/");
      return r.status === 200 ? r : undefined;
    },
    120_000,
  );
  const n = Number(first.body);
  assert.ok(n >= 1, first.body);
  assert.equal((await herd.request("counter.localhost", "/")).body, String(n + 1));
  const info = await herd.api<Addon>("GET", "/addons/cache");
  assert.deepEqual(
    info.body.bindings.map((b) => [b.app, b.var, b.user]),
    [["counter", "REDIS_URL", "u_counter"]],
  );
  // A Redis binding is a user, not a database of its own: `info` shows no DATABASE column.
  const shown = await herd.cli(["addons", "info", "cache"]);
  assert.match(shown.stdout, /^APP +VAR +USER\ncounter +REDIS_URL +u_counter$/m, shown.stdout);

  // An RDB snapshot, more counting, a restore: the count is back (the server was not restarted).
  const bk = await herd.cli(["addons", "backup", "cache", "--json"], { timeoutMs: 120_000 });
  assert.equal(bk.code, 0, bk.stdout + bk.stderr);
  const backup = JSON.parse(bk.stdout) as { id: string; format: string };
  assert.equal(backup.format, "rdb");
  const before = Number((await herd.request("counter.localhost", "/")).body);
  await herd.request("counter.localhost", "/");
  const rs = await herd.cli(["addons", "restore", "cache", backup.id], { timeoutMs: 120_000 });
  assert.equal(rs.code, 0, rs.stdout + rs.stderr);
  assert.equal((await herd.request("counter.localhost", "/")).body, String(before));

  // Scheduled backups (every second here: 6 fields, seconds first), then stopped; a bad cron names its field.
  const bad = await herd.api("PUT", "/addons/cache/backup-policy", { schedule: "daily", keep: 2 });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /schedule/);
  const sch = await herd.cli(["addons", "schedule", "cache", "* * * * * *", "--keep", "2"]);
  assert.equal(sch.code, 0, sch.stdout + sch.stderr);
  await waitFor(
    "scheduled backups, the newest two kept (the older manual one dropped)",
    async () => {
      const items = (
        await herd.api<{ items: { id: string; reason?: string }[] }>("GET", "/addons/cache/backups")
      ).body.items;
      const scheduled = items.filter((b) => b.reason === "scheduled").length;
      return scheduled === 2 && items.length === 2 && !items.some((b) => b.id === backup.id)
        ? true
        : undefined;
    },
    60_000,
  );
  const off = await herd.cli(["addons", "schedule", "cache", "--off"]);
  assert.equal(off.code, 0, off.stdout + off.stderr);

  // Rotation: the user gets a second password, the app rolls out with it, the old one is revoked.
  const rot = await herd.cli(["addons", "rotate", "cache"], { timeoutMs: 120_000 });
  assert.equal(rot.code, 0, rot.stdout + rot.stderr);
  await waitFor(
    "the old password revoked",
    async () => {
      const a = (await herd.api<Addon>("GET", "/addons/cache")).body;
      return a.bindings[0]?.rotation === 1 && !a.bindings[0].revoke ? true : undefined;
    },
    180_000,
  );
  // The old password goes once the rollout is done in the store; each gateway drops the old instances a moment later.
  await gatewaysInSync(herd);
  const after = await herd.request("counter.localhost", "/");
  assert.equal(after.status, 200, after.body);

  // A plan change: the server deployed again with medium's units and connections, in place, its keys kept.
  const count = Number((await herd.request("counter.localhost", "/")).body);
  const pl = await herd.cli(["addons", "plan", "cache", "medium"], { timeoutMs: 120_000 });
  assert.equal(pl.code, 0, pl.stdout + pl.stderr);
  assert.match(pl.stdout, /cache is on plan medium: deploy \S+ restarts its server in place/);
  await waitFor(
    "the plan change rolled out",
    async () => {
      const a = (await herd.api<Addon>("GET", "/addons/cache")).body;
      return a.plan === "medium" && !a.planChange ? true : undefined;
    },
    180_000,
  );
  const rel = (await herd.api<{ items: Release[] }>("GET", "/apps/cache/releases")).body.items[0];
  assert.equal(rel.services.db.env.REDIS_MAX_CLIENTS, "50");
  assert.equal(rel.description, "redis add-on (plan medium)");
  const counted = await waitFor(
    "counting again after the plan change",
    async () => {
      const r = await herd.request("counter.localhost", "/");
      return r.status === 200 ? r : undefined;
    },
    120_000,
  );
  assert.ok(Number(counted.body) > count, `the keys survived: ${counted.body} after ${count}`);
  const same = await herd.api<{ details: { field: string }[] }>("PATCH", "/addons/cache", { plan: "medium" });
  assert.equal(same.status, 400);
  assert.equal(same.body.details[0]?.field, "plan");

  const gone = await herd.cli(["addons", "destroy", "cache", "--confirm", "cache"], { timeoutMs: 120_000 });
  assert.equal(gone.code, 0, gone.stdout + gone.stderr);
  assert.match(gone.stdout, /final backup \S+ \(RDB snapshot, \d+ bytes\)/);
  // Restored under its name at once: the create waits for the destroyed server's app to go.
  const finalId = /final backup (\S+)/.exec(gone.stdout)?.[1] ?? "";
  const again = await herd.cli(["addons", "create", "redis", "--name", "cache", "--from-backup", finalId], {
    timeoutMs: 180_000,
  });
  assert.equal(again.code, 0, again.stdout + again.stderr);
  // A name a live app holds is refused, naming the field.
  const taken = await herd.api<{ code: string; details: { field: string }[] }>("POST", "/addons", {
    kind: "redis",
    name: "counter",
  });
  assert.equal(taken.status, 409);
  assert.equal(taken.body.details[0]?.field, "name");
  // An app destroyed while bound: its binding goes (its user deleted), with no release to roll out.
  const att = await herd.cli(["addons", "attach", "cache", "--app", "counter"], { timeoutMs: 120_000 });
  assert.equal(att.code, 0, att.stdout + att.stderr);
  const des = await herd.cli(["apps", "destroy", "counter", "--confirm", "counter"], { timeoutMs: 120_000 });
  assert.equal(des.code, 0, des.stdout + des.stderr);
  await waitFor(
    "the destroyed app's binding gone",
    async () => {
      const a = (await herd.api<Addon>("GET", "/addons/cache")).body;
      return a.bindings.length === 0 && (a.detached ?? []).length === 0 ? true : undefined;
    },
    60_000,
  );
  const end = await herd.cli(["addons", "destroy", "cache", "--confirm", "cache", "--without-backup"], {
    timeoutMs: 120_000,
  });
  assert.equal(end.code, 0, end.stdout + end.stderr);
});

test("bad input: unknown plan or kind, another tenant's add-on, unknown add-on or app", async () => {
  const plan = await herd.api<{
    code: string;
    message: string;
    details: { field: string; message: string }[];
  }>("POST", "/addons", { kind: "postgres", name: "x1", plan: "huge" });
  assert.equal(plan.status, 400);
  assert.equal(plan.body.details[0]?.field, "plan");
  assert.match(plan.body.details[0]?.message ?? "", /small, medium, large/);
  const kind = await herd.api<{ details: { field: string }[] }>("POST", "/addons", {
    kind: "mysql",
    name: "x2",
  });
  assert.equal(kind.status, 400);
  assert.equal(kind.body.details[0]?.field, "kind");
  const other = await herd.api<{ code: string }>("POST", "/addons/x3/attach", {
    app: "notes",
    addonTenant: "acme",
  });
  assert.equal(other.status, 403);
  const missing = await herd.api("POST", "/addons/nope/attach", { app: "notes" });
  assert.equal(missing.status, 404);
  assert.equal((await herd.api("GET", "/addons/nope")).status, 404);
  const noApp = await herd.api("POST", "/addons", { kind: "postgres", app: "ghost" });
  assert.equal(noApp.status, 404);
  const names = (await herd.api<{ items: Addon[] }>("GET", "/addons")).body.items.map((a) => a.name);
  assert.ok(!names.some((n) => ["x1", "x2", "ghost-postgres"].includes(n)), String(names));
});
