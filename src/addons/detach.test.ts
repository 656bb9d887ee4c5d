import assert from "node:assert/strict";
import { test } from "node:test";
import { isCode } from "../common/errors.ts";
import { deployKey } from "../controllers/deploy-controller.ts";
import { type Addon, addonKey, type DetachedBinding } from "../model/addon.ts";
import type { Deploy, Instance } from "../model/objects.ts";
import { MemoryStore } from "../store/memory-store.ts";
import type { AddonDeps } from "./addons.ts";
import { Detach, refuseWhileDropping } from "./detach.ts";

const KEY = addonKey("t", "notes-db");

function harness() {
  const store = new MemoryStore();
  const dropped: DetachedBinding[] = [];
  const events: string[] = [];
  const unset: string[] = [];
  // What was dumped, in order with the drops ("dump db_x" / "drop db_x"); a dump fails while dumpFails.
  const steps: string[] = [];
  const dumpFails = { now: false };
  let deploys = 0;
  const deploy = async (state: Deploy["state"], id = "d1") =>
    store.put<Deploy>("deploy", deployKey({ tenant: "t", app: "reports", id }), {
      id,
      tenant: "t",
      app: "reports",
      state,
      release: 2,
      createdAt: new Date(0).toISOString(),
      message: "",
    });
  const detach = new Detach({
    store,
    secrets: {
      unset: async (_t: string, app: string, v: string) => {
        unset.push(`${app} ${v}`);
      },
      value: async () => "admin-password",
    } as unknown as AddonDeps["secrets"],
    deploys: {
      secretChanged: async () => {
        deploys++;
        await deploy("rolling_out", `d${deploys}`);
        return { id: `d${deploys}` } as Deploy;
      },
    } as unknown as AddonDeps["deploys"],
    events: {
      record: async (e: { reason: string; message: string }) => {
        events.push(`${e.reason}: ${e.message}`);
        return undefined as never;
      },
    },
    update: async (_t, _n, f) => {
      const o = (await store.get<Addon>("addon", KEY))!;
      await store.put("addon", KEY, f(o.value), { expectRevision: o.revision });
    },
    endpoint: async () => "127.0.0.1:5432",
    artifacts: {} as AddonDeps["artifacts"],
    driver: () => ({
      drop: async (_e, _a, b) => {
        steps.push(`drop ${b.database}`);
        dropped.push(b as DetachedBinding);
      },
    }),
    dump: async (_a, _e, _admin, _artifacts, databases = []) => {
      if (dumpFails.now) throw new Error("pg_dump: connection refused");
      steps.push(`dump ${databases.join(",")}`);
      return { digest: "sha256:abc", size: 42, databases, format: "pg_dump" };
    },
  });
  const addon = async () => (await store.get<Addon>("addon", KEY))!.value;
  const instance = (id: string, release: number, state: Instance["state"]) =>
    store.put("instance", id, {
      id,
      tenant: "t",
      app: "reports",
      service: "web",
      release,
      state,
    } as Instance);
  return {
    store,
    detach,
    dropped,
    events,
    unset,
    steps,
    dumpFails,
    addon,
    deploy,
    instance,
    deploys: () => deploys,
  };
}

const ADDON: Addon = {
  tenant: "t",
  name: "notes-db",
  kind: "postgres",
  plan: "hobby",
  createdAt: new Date(0).toISOString(),
  bindings: [
    { app: "reports", var: "DATABASE_URL", user: "u_reports", database: "db_reports", createdAt: "" },
    { app: "notes", var: "DATABASE_URL", user: "u_notes", database: "db_notes", createdAt: "" },
  ],
};

test("detach: the URL goes with a release; the database is dropped only once it has rolled out", async () => {
  const h = harness();
  await h.store.put("addon", KEY, ADDON);
  const reply = await h.detach.detach(ADDON, "reports", "ann");
  assert.deepEqual(reply, { deploy: "d1", backupFirst: true });
  const a = await h.addon();
  assert.deepEqual(
    a.bindings.map((b) => b.app),
    ["notes"],
  );
  assert.deepEqual(
    a.detached?.map((d) => [d.app, d.database, d.afterDeploy]),
    [["reports", "db_reports", "d1"]],
  );
  assert.deepEqual(h.unset, ["reports DATABASE_URL"]);
  assert.match(
    h.events[0],
    /AddonDetached: .* by ann; its database db_reports is dropped \(after a backup\) once deploy d1 has rolled out/,
  );
  // Attaching the app again now would have its new database dropped with the old one.
  assert.throws(
    () => refuseWhileDropping(a, "reports"),
    (err) => isCode(err, "conflict") && /attach it again after that/.test((err as Error).message),
  );
  refuseWhileDropping(a, "notes");

  await h.detach.dropDetached(await h.addon());
  assert.equal(h.dropped.length, 0, "the release still rolls out");
  await h.deploy("succeeded");
  await h.instance("old", 1, "draining");
  await h.instance("new", 2, "running");
  await h.detach.dropDetached(await h.addon());
  assert.equal(h.dropped.length, 0, "an instance of the old release may still use the database");
  await h.instance("old", 1, "stopped");
  await h.detach.dropDetached(await h.addon());
  assert.deepEqual(
    h.dropped.map((d) => [d.app, d.user, d.database]),
    [["reports", "u_reports", "db_reports"]],
  );
  assert.deepEqual(
    h.steps,
    ["dump db_reports", "drop db_reports"],
    "the backup comes first, of that database only",
  );
  const after = await h.addon();
  assert.deepEqual(after.detached, []);
  const backup = after.backups?.[0];
  assert.deepEqual(
    [backup?.reason, backup?.app, backup?.databases, backup?.digest],
    ["detach", "reports", ["db_reports"], "sha256:abc"],
  );
  assert.match(
    h.events.at(-1)!,
    new RegExp(
      `AddonDatabaseDropped: notes-db: the database db_reports of reports is dropped .*; backup ${backup?.id} keeps it \\(herd addons restore notes-db ${backup?.id} after attaching reports again\\)`,
    ),
  );
});

const ROLLED_OUT: DetachedBinding = {
  app: "reports",
  var: "DATABASE_URL",
  user: "u_reports",
  database: "db_reports",
  since: new Date(0).toISOString(),
  released: true,
};

test("detach: no drop without its backup; a failed dump is tried again, a crash after the backup takes no second one", async () => {
  const h = harness();
  await h.store.put("addon", KEY, { ...ADDON, bindings: [ADDON.bindings[1]], detached: [ROLLED_OUT] });
  h.dumpFails.now = true;
  await assert.rejects(h.detach.dropDetached(await h.addon()), /connection refused/);
  assert.deepEqual(h.steps, [], "nothing dropped");
  assert.equal((await h.addon()).detached?.length, 1, "the drop waits for the next pass");

  h.dumpFails.now = false;
  // A backup recorded before a crash (its id on the entry): the drop goes on with it.
  await h.store.put("addon", KEY, {
    ...(await h.addon()),
    backups: [
      {
        id: "b1",
        createdAt: "",
        digest: "sha256:abc",
        size: 1,
        databases: ["db_reports"],
        reason: "detach",
        app: "reports",
      },
    ],
    detached: [{ ...ROLLED_OUT, backup: "b1" }],
  });
  await h.detach.dropDetached(await h.addon());
  assert.deepEqual(h.steps, ["drop db_reports"]);
  assert.match(h.events.at(-1)!, /backup b1 keeps it/);
});

test("detach: --without-backup, and redis (its drop takes the user, not the keys), drop with no dump", async () => {
  const h = harness();
  await h.store.put("addon", KEY, ADDON);
  const reply = await h.detach.detach(ADDON, "reports", "ann", true);
  assert.deepEqual(reply, { deploy: "d1" });
  assert.equal((await h.addon()).detached?.[0].withoutBackup, true);
  await h.store.put("addon", KEY, {
    ...(await h.addon()),
    detached: [{ ...ROLLED_OUT, withoutBackup: true }],
  });
  await h.detach.dropDetached(await h.addon());
  assert.deepEqual(h.steps, ["drop db_reports"]);

  const redis: Addon = { ...ADDON, kind: "redis", detached: [ROLLED_OUT] };
  await h.store.put("addon", KEY, redis);
  await h.detach.dropDetached(redis);
  assert.deepEqual(h.steps, ["drop db_reports", "drop db_reports"]);
  assert.equal((await h.addon()).backups, undefined);
});

test("detach: a crash between the record and the release is finished by the timer after STALE_MS", async () => {
  const h = harness();
  const since = new Date(Date.now() - 120_000).toISOString();
  const left: Addon = {
    ...ADDON,
    bindings: [ADDON.bindings[1]],
    detached: [{ app: "reports", var: "DATABASE_URL", user: "u_reports", database: "db_reports", since }],
  };
  await h.store.put("addon", KEY, left);
  await h.detach.dropDetached(left);
  assert.equal(h.deploys(), 1, "the release is made now");
  assert.equal((await h.addon()).detached?.[0].afterDeploy, "d1");
  assert.equal(h.dropped.length, 0, "and the drop waits for it");
  // One just recorded (a detach in flight) is left alone.
  await h.store.put("addon", KEY, {
    ...left,
    detached: [{ ...left.detached![0], since: new Date().toISOString() }],
  });
  await h.detach.dropDetached(await h.addon());
  assert.equal(h.deploys(), 1);
});

test("a destroyed app's binding: detached with no release, its database dropped after a backup", async () => {
  const h = harness();
  await h.store.put("addon", KEY, ADDON);
  await h.detach.appGone(ADDON, "reports");
  const a = await h.addon();
  assert.deepEqual(
    a.bindings.map((b) => b.app),
    ["notes"],
  );
  assert.deepEqual(
    a.detached?.map((d) => [d.app, d.database, d.released]),
    [["reports", "db_reports", true]],
  );
  assert.equal(h.deploys(), 0, "no release: the app is gone");
  assert.match(
    h.events[0],
    /AddonDetached: add-on notes-db detached from reports, which was destroyed; its database db_reports is dropped after a backup/,
  );
  await h.detach.dropDetached(await h.addon());
  assert.deepEqual(h.steps, ["dump db_reports", "drop db_reports"]);
  assert.deepEqual((await h.addon()).detached ?? [], []);
  // Once more (a second sync before the first's write was seen): nothing to do.
  await h.detach.appGone(await h.addon(), "reports");
  assert.equal(h.events.filter((e) => e.startsWith("AddonDetached")).length, 1);
});
