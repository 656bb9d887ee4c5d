// Final backups of destroyed add-ons through the real API: listed per tenant
// (a viewer's), deleted by a deployer, and `create --from-backup` checked
// before anything is made: an unknown id or another kind's backup is a 400
// naming fromBackup. Restoring one for real is test/e2e/addons-ops.test.ts.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall } from "../api/testing.ts";
import { runCli } from "../cli/test-api.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { FinalAddonBackup } from "../model/addon.ts";
import { FINAL_KIND } from "./final-backups.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-final-backups-"));

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
});
after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown, token?: string) =>
  apiCall(server, method, path, body, token ? { token } : {});

const final = (tenant: string, id: string, kind: string, at: string): FinalAddonBackup => ({
  id,
  tenant,
  addon: `${tenant}-${kind}`,
  kind,
  plan: "small",
  apps: ["notes"],
  createdAt: at,
  destroyedAt: at,
  destroyedBy: "admin",
  digest: "sha256:" + "0".repeat(64),
  size: 10,
  databases: kind === "postgres" ? ["db_notes"] : [],
  format: kind === "postgres" ? "pg_dump" : "rdb",
  reason: "final",
});

test("final backups: listed per tenant, refused as a source of another kind, deleted", async () => {
  assert.equal((await call("POST", "/tenants", { name: "acme" })).status, 201);
  assert.equal((await call("POST", "/users", { name: "vera" })).status, 201);
  assert.equal((await call("PUT", "/tenants/acme/members/vera", { role: "viewer" })).status, 200);
  const vera = (await call("POST", "/tokens", { name: "vera's", user: "vera" })).body.token as string;
  await server.store.put(
    FINAL_KIND,
    "default/aaa1",
    final("default", "aaa1", "postgres", "2026-01-01T00:00:00Z"),
  );
  await server.store.put(
    FINAL_KIND,
    "default/bbb2",
    final("default", "bbb2", "redis", "2026-01-02T00:00:00Z"),
  );
  await server.store.put(FINAL_KIND, "acme/ccc3", final("acme", "ccc3", "postgres", "2026-01-03T00:00:00Z"));

  const mine = await call("GET", "/addon-backups");
  assert.equal(mine.status, 200);
  assert.deepEqual(
    mine.body.items.map((b: FinalAddonBackup) => b.id),
    ["bbb2", "aaa1"],
    "the tenant's only, newest first",
  );
  const theirs = await call("GET", "/addon-backups?tenant=acme", undefined, vera);
  assert.deepEqual(
    theirs.body.items.map((b: FinalAddonBackup) => b.id),
    ["ccc3"],
  );
  assert.equal((await call("GET", "/addon-backups?tenant=default", undefined, vera)).status, 403);
  assert.equal((await call("DELETE", "/addon-backups/ccc3?tenant=acme", undefined, vera)).status, 403);

  const cli = await runCli(["addons", "final-backups"], { server: server.url, token: server.adminToken });
  assert.equal(cli.code, 0, cli.err);
  assert.match(cli.out, /bbb2\s+default-redis\s+redis\s+2026-01-02T00:00:00Z\s+10\s+RDB snapshot/);
  assert.match(cli.out, /aaa1\s+default-postgres\s+postgres\s+\S+\s+10\s+db_notes/);

  // A source of another kind, another tenant's, or none: 400 naming fromBackup, nothing made.
  for (const [kind, id] of [
    ["redis", "aaa1"],
    ["postgres", "ccc3"],
    ["postgres", "nope"],
  ]) {
    const r = await call("POST", "/addons", { kind, name: "restored", fromBackup: id });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.details[0].field, "fromBackup");
  }
  const badId = await call("POST", "/addons", { kind: "postgres", name: "restored", fromBackup: "../x" });
  assert.equal(badId.status, 400);
  assert.match(JSON.stringify(badId.body.details), /fromBackup/);
  assert.equal((await call("GET", "/addons/restored")).status, 404);
  assert.equal((await call("GET", "/apps/restored")).status, 404);

  const del = await runCli(["addons", "final-backups", "delete", "aaa1"], {
    server: server.url,
    token: server.adminToken,
  });
  assert.equal(del.code, 0, del.err);
  assert.equal((await call("DELETE", "/addon-backups/aaa1")).status, 404);
  assert.deepEqual(
    (await call("GET", "/addon-backups")).body.items.map((b: FinalAddonBackup) => b.id),
    ["bbb2"],
  );
});
