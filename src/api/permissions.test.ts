// Every route of a running server declares its permission in ROUTES, and every
// entry of ROUTES is a route the server serves: the OpenAPI document plus the
// hidden routes, walked over a real socket.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { decide, type Principal, ROUTES } from "./permissions.ts";

/** Routes left out of the OpenAPI document (`schema.hide`). */
const HIDDEN = ["GET /healthz", "GET /metrics", "GET /api/v1/openapi.json", "GET /", "GET /*"];

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-permissions-"));
before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `METHOD /path` of every operation in the OpenAPI document, in Fastify's path syntax. */
async function documentedRoutes(): Promise<string[]> {
  const res = await fetch(`${server.url}/api/v1/openapi.json`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  assert.equal(res.status, 200);
  const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>> };
  const out: string[] = [];
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const method of Object.keys(operations)) {
      if (method === "parameters") continue;
      out.push(`${method.toUpperCase()} ${path.replace(/\{([^}]+)\}/g, ":$1")}`);
    }
  }
  return out;
}

test("every documented and hidden route has an entry in ROUTES", async () => {
  const served = [...(await documentedRoutes()), ...HIDDEN];
  assert.ok(served.length > 100, `the document lists ${served.length} routes`);
  const undeclared = served.filter((r) => !(r in ROUTES));
  assert.deepEqual(undeclared, [], "routes without a permission");
});

test("every entry of ROUTES is a route the server serves", async () => {
  const served = new Set([...(await documentedRoutes()), ...HIDDEN]);
  const stale = Object.keys(ROUTES).filter((r) => !served.has(r));
  assert.deepEqual(stale, [], "ROUTES entries that are not routes");
  // The hidden ones are real too: the server answers them, not its 404 handler.
  for (const r of HIDDEN) {
    const [method, path] = r.split(" ");
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    assert.equal(res.status, 200, r);
    await res.arrayBuffer();
  }
});

test("a path that is no route is the 404 handler's, with the JSON error shape", async () => {
  const res = await fetch(`${server.url}/api/v1/no-such-route`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  assert.equal(res.status, 404);
  assert.deepEqual(await res.json(), { code: "not_found", message: "no route GET /api/v1/no-such-route" });
});

test("an ingest token writes its tenant's telemetry and nothing else, not even whoami", () => {
  const ingest: Principal = {
    token: { id: "i", name: "ingest", kind: "ingest", tenant: "a", createdAt: "2026-01-01T00:00:00Z" },
    label: "ingest a",
    admin: false,
    roles: new Map(),
  };
  assert.deepEqual(decide(ingest, "telemetry:write", {}), { permission: "telemetry:write", tenant: "a" });
  for (const permission of ["self", "telemetry:read", "apps:read"] as const) {
    assert.throws(() => decide(ingest, permission, {}), { code: "forbidden" }, permission);
  }
  const agent: Principal = { ...ingest, token: { ...ingest.token, kind: "agent", node: "n1" } };
  assert.deepEqual(decide(agent, "self", {}), { permission: "self" });
  const join: Principal = { ...ingest, token: { ...ingest.token, kind: "join" } };
  assert.throws(() => decide(join, "self", {}), /only joins a node/);
  assert.deepEqual(decide(join, "node:join", { node: "n1" }), { permission: "node:join" });
});
