import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parseManifest } from "../model/manifest.ts";
import { databaseUrl, findPostgresBin, postgresSource, splitEndpoint } from "./postgres.ts";

test("findPostgresBin takes the newest version that has every binary", () => {
  const root = mkdtempSync(join(tmpdir(), "herd-pgbin-"));
  try {
    assert.equal(findPostgresBin(join(root, "none")), undefined);
    for (const [v, bins] of [
      ["15", ["postgres", "initdb", "psql", "pg_isready"]],
      ["16", ["postgres", "initdb"]],
    ] as const) {
      mkdirSync(join(root, v, "bin"), { recursive: true });
      for (const b of bins) writeFileSync(join(root, v, "bin", b), "");
    }
    assert.equal(findPostgresBin(root), join(root, "15", "bin"));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("the add-on's source is one pet service with a TCP check, its admin password a secret", () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-pgsrc-"));
  try {
    postgresSource(dir, {
      name: "db1",
      bin: "/pg/bin",
      nssWrapper: "/lib/nss.so",
      units: 2,
      maxConnections: 50,
    });
    const m = parseManifest(readFileSync(join(dir, "herd.yaml"), "utf8"), "herd.yaml");
    const db = m.services?.db;
    assert.equal(db?.mode, "pet");
    assert.equal(db?.instances, 1);
    assert.deepEqual(db?.resources, { units: 2 });
    assert.deepEqual(db?.env?.ADDON_PASSWORD, { secret: "ADDON_PASSWORD" });
    const script = readFileSync(join(dir, "start.sh"), "utf8");
    assert.match(script, /initdb" -D "\$PGDATA.init" -U herd --pwfile/);
    assert.match(script, /exec "\$PG_BIN\/postgres" -D "\$PGDATA" -p "\$PORT"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("URLs and endpoints", () => {
  assert.deepEqual(splitEndpoint("10.0.0.5:5432"), ["10.0.0.5", "5432"]);
  assert.equal(
    databaseUrl({ user: "u_a", database: "db_a", password: "ff" }, "h:1"),
    "postgres://u_a:ff@h:1/db_a",
  );
});
