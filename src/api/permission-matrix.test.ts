// The permission matrix: every route of ROUTES × every kind of caller (tenant ×
// role × machine identity × bad tokens), each cell a real HTTP request to one
// real server, checked against the rules as the issue states them (below, in
// `expected`; not computed by decide(), so that this test can disagree with it).
//
// allow  = anything but 401/403 (200, 400 for the empty body, 404 for the missing object…)
// deny   = 403;  unauthenticated = 401
// Requests carry bodies that fail validation (or name objects that do not exist), so no cell
// changes what a later cell sees: authorization runs in onRequest, before validation.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Agent, request } from "undici";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Role } from "../model/identity.ts";
import { type Permission, ROUTES } from "./permissions.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";

/** Who calls: the kinds of identity the issue names. */
type Who =
  | { kind: "admin" }
  | { kind: "user"; roles: Record<string, Role> }
  | { kind: "agent"; node: string }
  | { kind: "gateway" }
  | { kind: "ingest"; tenant: string }
  | { kind: "join" }
  | { kind: "revoked" | "expired" | "none" };

/** One column of the matrix: a caller and what its requests name. */
interface Caller {
  label: string;
  who: Who;
  token?: keyof TestTokens | "spans";
  /** `?tenant=` on every request (undefined: the tenant comes from the token). */
  tenant?: string;
  /** The tenant the request acts in (the named one, or the token's). */
  acts: string;
  /** The node in /nodes/:name paths. */
  node: string;
}

type Outcome = "allow" | "deny" | "unauthenticated";

/** What each role holds in its own tenant, by area and verb. */
const ROLE_RULES: Record<Role, { read: string[]; write: string[] }> = {
  // read apps, logs, metrics, traces, events; secret names
  viewer: { read: ["apps", "secrets", "telemetry", "tenant"], write: [] },
  // and deploy, scale, roll back, routes, config, secret values (write-only), telemetry
  deployer: { read: ["apps", "secrets", "telemetry", "tenant"], write: ["apps", "secrets", "telemetry"] },
  // and members, tokens, the tenant's own service brokers (issue 15) and everything in the tenant
  owner: {
    read: ["apps", "secrets", "telemetry", "tenant", "members", "audit"],
    write: ["apps", "secrets", "telemetry", "members", "brokers"],
  },
};

/** The rules of issue 10, restated: what should happen when `c` calls a route that needs `permission`. */
function expected(c: Caller, permission: Permission | null, pathNode: string | undefined): Outcome {
  if (permission === null) return "allow"; // health and the server's own metrics need no token
  const who = c.who;
  if (who.kind === "none" || who.kind === "revoked" || who.kind === "expired") return "unauthenticated";
  if (who.kind === "admin") return "allow"; // all tenants, nodes, quotas, domains
  const allow = (yes: boolean): Outcome => (yes ? "allow" : "deny");
  if (who.kind === "join") return allow(permission === "node:join"); // it only turns into an agent token
  switch (who.kind) {
    case "agent": // its own node only
      return allow(
        permission === "self" ||
          (permission === "node:agent" && (pathNode === undefined || pathNode === who.node)),
      );
    case "gateway": // routing config read, its status and spans write
      return allow(permission === "self" || permission === "gateway:sync");
    case "ingest": // telemetry write for one tenant, nothing else
      return allow(permission === "telemetry:write" && c.acts === who.tenant);
    case "user": {
      if (permission === "self") return "allow";
      const [area, verb] = permission.split(":");
      const role = who.roles[c.acts];
      if (!role) return "deny"; // no role there
      const rules = ROLE_RULES[role];
      return allow((verb === "read" ? rules.read : verb === "write" ? rules.write : []).includes(area));
    }
  }
}

const users = (tenant: string | undefined, acts: string): Caller[] =>
  (["owner", "deployer", "viewer"] as const).map((role) => ({
    label: `${role} of a on ${acts}`,
    who: { kind: "user", roles: { a: role } },
    token: `${role}A`,
    tenant,
    acts,
    node: "n1",
  }));

const CALLERS: Caller[] = [
  { label: "admin on a", who: { kind: "admin" }, token: "admin", tenant: "a", acts: "a", node: "n1" },
  { label: "admin on b", who: { kind: "admin" }, token: "admin", tenant: "b", acts: "b", node: "n2" },
  { label: "admin, no tenant", who: { kind: "admin" }, token: "admin", acts: "default", node: "n1" },
  ...users("a", "a"),
  ...users("b", "b"),
  {
    label: "deployer of a, tenant from the token",
    who: { kind: "user", roles: { a: "deployer" } },
    token: "deployerA",
    acts: "a",
    node: "n1",
  },
  ...["a", "b"].map(
    (t): Caller => ({
      label: `owner of a and viewer of b on ${t}`,
      who: { kind: "user", roles: { a: "owner", b: "viewer" } },
      token: "ownerAViewerB",
      tenant: t,
      acts: t,
      node: "n1",
    }),
  ),
  ...["a", "b"].map(
    (t): Caller => ({
      label: `service account of a on ${t}`,
      who: { kind: "user", roles: { a: "deployer" } },
      token: "serviceA",
      tenant: t,
      acts: t,
      node: "n1",
    }),
  ),
  ...["n1", "n2"].map(
    (n): Caller => ({
      label: `agent n1 on ${n}`,
      who: { kind: "agent", node: "n1" },
      token: "agentN1",
      acts: "default",
      node: n,
    }),
  ),
  { label: "gateway", who: { kind: "gateway" }, token: "gateway", acts: "default", node: "n1" },
  ...["a", "b"].map(
    (t): Caller => ({
      label: `ingest of a on ${t}`,
      who: { kind: "ingest", tenant: "a" },
      token: "ingestA",
      tenant: t,
      acts: t,
      node: "n1",
    }),
  ),
  {
    label: "ingest of a, tenant from the token",
    who: { kind: "ingest", tenant: "a" },
    token: "ingestA",
    acts: "a",
    node: "n1",
  },
  // The span token every instance gets (OTEL_* defaults): ingest for the default tenant.
  {
    label: "apps' span token",
    who: { kind: "ingest", tenant: "default" },
    token: "spans",
    acts: "default",
    node: "n1",
  },
  {
    label: "apps' span token on a",
    who: { kind: "ingest", tenant: "default" },
    token: "spans",
    tenant: "a",
    acts: "a",
    node: "n1",
  },
  { label: "join token", who: { kind: "join" }, token: "join", acts: "default", node: "n1" },
  { label: "revoked token", who: { kind: "revoked" }, token: "revoked", tenant: "a", acts: "a", node: "n1" },
  { label: "expired token", who: { kind: "expired" }, token: "expired", tenant: "a", acts: "a", node: "n1" },
  { label: "no token", who: { kind: "none" }, tenant: "a", acts: "a", node: "n1" },
];

/** A path of ROUTES with its parameters filled in for a caller: objects that do not exist, or the caller's tenant and node. */
function concretePath(path: string, c: Caller): { url: string; node?: string } {
  let node: string | undefined;
  const filled = path.replace(/:([a-z]+)/g, (_, param: string) => {
    if (param === "name" && path.startsWith("/api/v1/tenants/")) return c.acts;
    if (param === "name" && path.startsWith("/api/v1/nodes/")) {
      node = c.node;
      return c.node;
    }
    if (param === "id" && path.startsWith("/api/v1/tokens/")) return "0000beef";
    if (param === "id" && path.startsWith("/api/v1/traces/")) return "0".repeat(32);
    if (param === "digest") return "0".repeat(64);
    return `nope-${param}`;
  });
  const query = c.tenant !== undefined && !path.startsWith("/api/v1/tenants/") ? `?tenant=${c.tenant}` : "";
  return { url: filled + query, node };
}

let server: RunningServer;
let tokens: TestTokens & { spans: string };
const dir = mkdtempSync(join(tmpdir(), "herd-matrix-"));
const agents: Agent[] = [];

before(async () => {
  // The matrix sends many queries at once: a queue long enough that none waits for a 429 (tested in query-pool tests).
  server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    metrics: { query: { queue: 4096, perTenantQueue: 4096 } },
  });
  tokens = {
    ...(await createTestTokens(server.url, server.adminToken)),
    spans: await server.ingestTokens.forTenant("default"),
  };
});
after(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Cell {
  route: string;
  caller: Caller;
  want: Outcome;
  status?: number;
  got?: Outcome;
}

test("tenant × role × resource × verb: no unexpected allow, no unexpected deny", async () => {
  const cells: Cell[] = [];
  const requests: { cell: Cell; method: string; url: string; token?: string }[] = [];
  for (const [route, permission] of Object.entries(ROUTES)) {
    const [method, path] = route.split(" ");
    for (const caller of CALLERS) {
      const { url, node } = concretePath(path, caller);
      const cell: Cell = { route, caller, want: expected(caller, permission, node) };
      cells.push(cell);
      requests.push({ cell, method, url, token: caller.token ? tokens[caller.token] : undefined });
    }
  }
  // Calls without a token count against their address's sign-in failures (429 after a burst):
  // each comes from its own loopback address, as different clients would.
  let nextAddress = 0;
  const freshClient = () => {
    nextAddress++;
    const agent = new Agent({
      localAddress: `127.0.${2 + Math.floor(nextAddress / 250)}.${1 + (nextAddress % 250)}`,
    });
    agents.push(agent);
    return agent;
  };
  const shared = new Agent({ connections: 16 });
  agents.push(shared);

  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const r = requests[next++];
      const write = r.method !== "GET" && r.method !== "DELETE";
      const res = await request(`${server.url}${r.url}`, {
        method: r.method as "GET",
        dispatcher: r.token ? shared : freshClient(),
        headers: {
          ...(r.token ? { authorization: `Bearer ${r.token}` } : {}),
          ...(write ? { "content-type": "application/json" } : {}),
        },
        body: write ? "{}" : undefined,
      });
      // Streams (watch, log follow, SSE) are judged by their headers, then dropped.
      const type = String(res.headers["content-type"] ?? "");
      if (type.includes("ndjson") || type.includes("event-stream")) res.body.destroy();
      else await res.body.dump({ limit: 16 * 1024 * 1024 });
      r.cell.status = res.statusCode;
      r.cell.got = res.statusCode === 401 ? "unauthenticated" : res.statusCode === 403 ? "deny" : "allow";
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const seconds = (Date.now() - started) / 1000;

  const allows = cells.filter((c) => c.want !== "allow" && c.got === "allow");
  const denies = cells.filter((c) => c.want === "allow" && c.got !== "allow");
  const wrongRefusal = cells.filter((c) => c.want !== "allow" && c.got !== "allow" && c.got !== c.want);
  const broken = cells.filter((c) => (c.status ?? 0) >= 500 || c.status === 429);
  const show = (list: Cell[]) =>
    list
      .slice(0, 30)
      .map((c) => `  ${c.route} as ${c.caller.label}: want ${c.want}, got ${c.status}`)
      .join("\n");
  const routes = Object.keys(ROUTES).length;
  console.log(
    `permission matrix: ${cells.length} cells (${routes} routes × ${CALLERS.length} callers) in ${seconds.toFixed(1)} s; ` +
      `${cells.filter((c) => c.want === "allow").length} allowed, ${cells.filter((c) => c.want === "deny").length} denied, ` +
      `${cells.filter((c) => c.want === "unauthenticated").length} unauthenticated; ` +
      `unexpected allows ${allows.length}, unexpected denies ${denies.length}, wrong refusals ${wrongRefusal.length}, 5xx/429 ${broken.length}`,
  );
  assert.ok(cells.length >= 1500, `${cells.length} cells`);
  assert.equal(allows.length, 0, `unexpected allows:\n${show(allows)}`);
  assert.equal(denies.length, 0, `unexpected denies:\n${show(denies)}`);
  assert.equal(wrongRefusal.length, 0, `401 where 403 was due or the reverse:\n${show(wrongRefusal)}`);
  assert.equal(broken.length, 0, `server errors or rate limits:\n${show(broken)}`);
});
