import assert from "node:assert/strict";
import { test } from "node:test";
import { orphanVolumes, volumeOwners } from "./orphan-volumes.ts";

test("a pet volume's id names its tenant and every app that could own it", () => {
  assert.deepEqual(volumeOwners("db-server-0"), { tenant: "default", apps: ["db"] });
  assert.deepEqual(volumeOwners("my-shop-db-server-12"), {
    tenant: "default",
    apps: ["my", "my-shop", "my-shop-db"],
  });
  assert.deepEqual(volumeOwners("acme.keeper-web-0"), { tenant: "acme", apps: ["keeper"] });
  // Not pet ids: no index, no service, a set-aside copy, two dots.
  for (const id of [
    "db-server",
    "db-0",
    "keeper-web-0.tenant-b-1765000000000",
    "a.b.c-d-0",
    ".x-y-0",
    "Db-web-0",
  ])
    assert.equal(volumeOwners(id), undefined, id);
});

test("only volumes of a destroyed app, of none alive and of no instance on the node are discarded", () => {
  const apps = new Set(["default/db", "default/my-shop", "acme/keeper"]);
  const exists = (tenant: string, app: string) => apps.has(`${tenant}/${app}`);
  const stones = new Set([
    "default/gone",
    "other/keeper",
    "default/placed",
    "default/my-shop-db",
    "default/db",
  ]);
  const destroyed = (tenant: string, app: string) => stones.has(`${tenant}/${app}`);
  const held = [
    "db-server-0", // its app exists
    "my-shop-db-server-1", // app my-shop exists: kept, though my-shop-db may be the gone owner
    "gone-web-0", // app gone, destroyed: discarded
    "never-web-0", // no app, never destroyed here (a store restored from an older backup): kept
    "acme.keeper-web-0", // acme's keeper exists
    "other.keeper-web-0", // tenant other has no keeper: discarded
    "placed-web-3", // destroyed, but an instance here (a new app of the name): kept
    "db-server-1", // destroyed once, made again: kept
    "keeper-web-0.tenant-b-1765000000000", // set aside for an admin: never
  ];
  assert.deepEqual(
    orphanVolumes(held, (id) => id === "placed-web-3", exists, destroyed),
    ["gone-web-0", "other.keeper-web-0"],
  );
  assert.deepEqual(
    orphanVolumes([], () => false, exists, destroyed),
    [],
  );
});
