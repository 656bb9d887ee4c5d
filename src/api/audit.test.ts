// The audit trail's filters: tenant, app and (for the asset catalog) the routes written to.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { AuditLog } from "./audit.ts";

test("list: only the given routes when routes are given; none for an empty list", () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-audit-"));
  const audit = new AuditLog(join(dir, "audit.db"));
  try {
    const entry = (route: string, app: string) => ({
      at: new Date().toISOString(),
      actor: "user alice",
      token: "t1",
      tenant: "a",
      app,
      verb: "create",
      route,
      path: "/",
      status: 202,
      address: "127.0.0.1",
    });
    audit.append(entry("POST /api/v1/apps/:app/deploys", "shop"));
    audit.append(entry("POST /api/v1/apps/:app/scale", "shop"));
    audit.append(entry("POST /api/v1/apps/:app/rollback", "shop"));
    audit.append(entry("POST /api/v1/apps/:app/deploys", "blog"));
    const routes = ["POST /api/v1/apps/:app/deploys", "POST /api/v1/apps/:app/rollback"];
    assert.deepEqual(
      audit.list({ tenant: "a", app: "shop" }, routes).map((e) => e.route),
      routes,
    );
    assert.equal(audit.list({ tenant: "a", app: "shop" }).length, 3);
    assert.deepEqual(audit.list({ tenant: "a" }, []), []);
  } finally {
    audit.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
