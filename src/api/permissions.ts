/**
 * Who may call what: the one table of every API route and the permission it
 * needs, what each role holds, and the decision for one request.
 *
 *   token ─► Principal (auth.ts) ─► ROUTES[method path] ─► permission ─► decide() ─► tenant
 *
 * A route missing from ROUTES makes the server refuse to start (buildApi's
 * onRoute hook), and permissions.test.ts walks the OpenAPI document, so no
 * route can be added without saying who may call it.
 */

import { HerdError } from "../common/errors.ts";
import type { Role, Token } from "../model/identity.ts";

/**
 * Permissions. Those in TENANT_PERMISSIONS act inside one tenant (the request's,
 * from the token or `?tenant=`); the rest are platform-wide or for machines.
 */
export type Permission =
  // inside a tenant
  | "apps:read" // apps, services, releases, deploys, instances, routes, consumers, events, alert rules
  | "apps:write" // create, deploy, scale, restart, roll back, destroy, move, routes, traffic, consumers, alert rules
  | "secrets:read" // secret names and versions, never values
  | "secrets:write" // set and unset secret values (write-only)
  | "telemetry:read" // logs, metrics, traces, alerts of the tenant
  | "telemetry:write" // push metrics and spans for the tenant
  | "members:read" // the tenant's members, service accounts and their tokens
  | "members:write" // add and remove members, service accounts and their tokens
  | "audit:read" // the tenant's audit trail
  | "tenant:read" // the tenant itself: quota, usage, domains
  | "brokers:write" // register and remove the tenant's own service brokers
  // the platform
  | "platform:read" // nodes, every tenant, gateways, stores' counters, service discovery
  | "platform:write" // nodes, tenants, quotas, domains, users, scrape targets, key rotation
  // machines
  | "node:agent" // an agent's protocol: heartbeat as its own node, ship logs, fetch slugs
  | "node:join" // trade a join token for a node credential (api/credentials.ts)
  | "gateway:sync" // a gateway's routing config (snapshot, watch), its status, its live load, its span batches, waking a service scaled to zero
  // anyone signed in
  | "self"; // version, OpenAPI, whoami, one's own tokens

export const TENANT_PERMISSIONS: ReadonlySet<Permission> = new Set<Permission>([
  "apps:read",
  "apps:write",
  "secrets:read",
  "secrets:write",
  "telemetry:read",
  "telemetry:write",
  "members:read",
  "members:write",
  "audit:read",
  "tenant:read",
  "brokers:write",
]);

const VIEWER: Permission[] = ["apps:read", "secrets:read", "telemetry:read", "tenant:read"];
const DEPLOYER: Permission[] = [...VIEWER, "apps:write", "secrets:write", "telemetry:write"];
const OWNER: Permission[] = [...DEPLOYER, "members:read", "members:write", "audit:read", "brokers:write"];

/** What each tenant role may do in its tenant. */
export const ROLE_PERMISSIONS: Record<Role, ReadonlySet<Permission>> = {
  viewer: new Set(VIEWER),
  deployer: new Set(DEPLOYER),
  owner: new Set(OWNER),
};

/** What each machine identity may do (an ingest token only in its own tenant). */
export const MACHINE_PERMISSIONS: Record<Exclude<Token["kind"], "user">, ReadonlySet<Permission>> = {
  agent: new Set<Permission>(["node:agent", "self"]),
  gateway: new Set<Permission>(["gateway:sync", "self"]),
  ingest: new Set<Permission>(["telemetry:write"]),
  join: new Set<Permission>(["node:join"]),
};

/**
 * Every route of the API, as `METHOD /path` (Fastify's path syntax), and the
 * permission it needs. `null`: no token at all (health, the API's own metrics, the console's files).
 */
export const ROUTES: Readonly<Record<string, Permission | null>> = {
  "GET /healthz": null,
  "GET /metrics": null,
  // the web console's files and deep links (routes/console.ts): the page asks for a token itself
  "GET /": null,
  "GET /*": null,
  "GET /api/v1/openapi.json": "self",
  "GET /api/v1/version": "self",
  "GET /api/v1/whoami": "self",

  // identities (routes/identity.ts)
  "GET /api/v1/tokens": "self",
  "POST /api/v1/tokens": "self",
  "DELETE /api/v1/tokens/:id": "self",
  "GET /api/v1/users": "platform:read",
  "POST /api/v1/users": "platform:write",
  "DELETE /api/v1/users/:name": "platform:write",
  "GET /api/v1/tenants": "self",
  "POST /api/v1/tenants": "platform:write",
  "GET /api/v1/tenants/:name": "tenant:read",
  "PUT /api/v1/tenants/:name/quota": "platform:write",
  "PUT /api/v1/tenants/:name/domains": "platform:write",
  "PUT /api/v1/tenants/:name/limits": "platform:write",
  "PUT /api/v1/tenants/:name/image-user": "platform:write",
  "GET /api/v1/tenants/:name/members": "members:read",
  "PUT /api/v1/tenants/:name/members/:user": "members:write",
  "DELETE /api/v1/tenants/:name/members/:user": "members:write",
  "POST /api/v1/tenants/:name/service-accounts": "members:write",
  "GET /api/v1/audit": "audit:read",
  // every node's totals and the tenant's own figures; all tenants for a platform admin naming none (routes/capacity.ts)
  "GET /api/v1/capacity": "tenant:read",

  // apps (routes/apps.ts, cluster.ts)
  "GET /api/v1/apps": "apps:read",
  "POST /api/v1/apps": "apps:write",
  "GET /api/v1/apps/:app": "apps:read",
  "DELETE /api/v1/apps/:app": "apps:write",
  "POST /api/v1/apps/:app/deploys": "apps:write",
  "GET /api/v1/apps/:app/deploys": "apps:read",
  "GET /api/v1/apps/:app/deploys/:id": "apps:read",
  "GET /api/v1/apps/:app/deploys/:id/log": "apps:read",
  // an app's git remote (routes/git.ts): a push (info/refs?service=git-receive-pack too) needs apps:write
  "GET /api/v1/tenants/:name/git/:repo/info/refs": "apps:read",
  "POST /api/v1/tenants/:name/git/:repo/git-upload-pack": "apps:read",
  "POST /api/v1/tenants/:name/git/:repo/git-receive-pack": "apps:write",
  "GET /api/v1/apps/:app/releases": "apps:read",
  "POST /api/v1/apps/:app/rollback": "apps:write",
  "GET /api/v1/apps/:app/instances": "apps:read",
  "GET /api/v1/instances": "apps:read", // every app's, for the console's overview (routes/instances.ts)
  "GET /api/v1/apps/:app/load": "apps:read",
  "POST /api/v1/apps/:app/instances/:id/move": "apps:write",
  "POST /api/v1/apps/:app/scale": "apps:write",
  "POST /api/v1/apps/:app/restart": "apps:write",
  "GET /api/v1/apps/:app/autoscale": "apps:read",
  "GET /api/v1/apps/:app/export/kubernetes": "apps:read", // routes/export.ts
  // canary and blue/green rollouts (routes/rollouts.ts)
  "GET /api/v1/apps/:app/rollout": "apps:read",
  "POST /api/v1/apps/:app/rollout/promote": "apps:write",
  "POST /api/v1/apps/:app/rollout/pause": "apps:write",
  "POST /api/v1/apps/:app/rollout/resume": "apps:write",
  "POST /api/v1/apps/:app/rollout/abort": "apps:write",
  // version sets: herd.set.yaml (routes/sets.ts); dependsOn checked before a deploy uploads (routes/dependencies.ts)
  "POST /api/v1/apps/:app/dependencies/check": "apps:write",
  "POST /api/v1/sets": "apps:write",
  "POST /api/v1/sets/diff": "apps:read",
  "GET /api/v1/sets/:name": "apps:read",
  "GET /api/v1/sets/:name/versions/:version": "apps:read",
  "POST /api/v1/sets/:name/rollback": "apps:write",
  // environments: pipelines and promotion (routes/pipelines.ts), preview apps (routes/previews.ts)
  "POST /api/v1/pipelines": "apps:write",
  "GET /api/v1/pipelines": "apps:read",
  "GET /api/v1/pipelines/:name": "apps:read",
  "DELETE /api/v1/pipelines/:name": "apps:write",
  "POST /api/v1/pipelines/:name/promote": "apps:write",
  "POST /api/v1/apps/:app/previews": "apps:write",
  "GET /api/v1/previews": "apps:read",
  "DELETE /api/v1/apps/:app/previews/:name": "apps:write",
  // remediation (routes/remediation.ts)
  "GET /api/v1/apps/:app/remediation": "apps:read",
  "PUT /api/v1/apps/:app/remediation": "apps:write",
  "POST /api/v1/apps/:app/remediation/pause": "apps:write",
  "POST /api/v1/apps/:app/remediation/resume": "apps:write",
  "GET /api/v1/apps/:app/logs": "telemetry:read",
  // One-off runs carry the app's secrets: starting or stopping one is a deployer's act (routes/jobs.ts).
  "POST /api/v1/apps/:app/runs": "apps:write",
  "GET /api/v1/apps/:app/runs": "apps:read",
  "GET /api/v1/apps/:app/runs/:id": "apps:read",
  "POST /api/v1/apps/:app/runs/:id/stop": "apps:write",
  "GET /api/v1/apps/:app/jobs": "apps:read",
  "GET /api/v1/events": "apps:read",
  // the asset catalog (routes/catalog.ts): a platform admin naming no tenant sees every tenant's
  "GET /api/v1/catalog/apps": "apps:read",
  "GET /api/v1/catalog/apps/:app": "apps:read",
  "GET /api/v1/catalog/apps/:app/releases/:version/packages": "apps:read",
  "GET /api/v1/catalog/packages": "apps:read",

  // live routes and traffic (routes/live-config.ts)
  "GET /api/v1/apps/:app/routes": "apps:read",
  "GET /api/v1/apps/:app/routes/:name": "apps:read",
  "PUT /api/v1/apps/:app/routes/:name": "apps:write",
  "DELETE /api/v1/apps/:app/routes/:name": "apps:write",
  "PATCH /api/v1/apps/:app/services/:service/traffic": "apps:write",
  "GET /api/v1/gateways": "platform:read",
  "PUT /api/v1/gateways/:id/status": "gateway:sync",
  "PUT /api/v1/gateways/:id/load": "gateway:sync",
  // A gateway holding requests for a service scaled to zero asks for an instance (routes/wake.ts).
  "POST /api/v1/apps/:app/services/:svc/wake": "gateway:sync",
  // service discovery's registry (routes/discovery.ts)
  "GET /api/v1/apps/:app/services/:svc/endpoints": "apps:read",
  "DELETE /api/v1/gateways/:id": "gateway:sync",

  // consumers (routes/consumers.ts)
  "GET /api/v1/consumers": "apps:read",
  "POST /api/v1/consumers": "apps:write",
  "GET /api/v1/consumers/:name": "apps:read",
  "DELETE /api/v1/consumers/:name": "apps:write",
  "POST /api/v1/consumers/:name/keys": "apps:write",
  "DELETE /api/v1/consumers/:name/keys/:id": "apps:write",
  "POST /api/v1/consumers/:name/jwt": "apps:write",
  "DELETE /api/v1/consumers/:name/jwt/:id": "apps:write",

  // the config center (routes/config.ts): an app's config is its deployers' to change; the catalog's lower layers the platform admin's
  "GET /api/v1/apps/:app/config": "apps:read",
  "GET /api/v1/apps/:app/config/versions": "apps:read",
  "GET /api/v1/apps/:app/config/versions/:version": "apps:read",
  "GET /api/v1/apps/:app/config/diff": "apps:read",
  "GET /api/v1/apps/:app/config/status": "apps:read",
  "POST /api/v1/apps/:app/config/versions": "apps:write",
  "POST /api/v1/apps/:app/config/rollback": "apps:write",
  "POST /api/v1/apps/:app/config/promote": "apps:write",
  "POST /api/v1/apps/:app/config/abort": "apps:write",
  "GET /api/v1/config/catalog": "apps:read",
  "GET /api/v1/config/catalog/:layer/:name/versions": "apps:read",
  "GET /api/v1/config/catalog/:layer/:name/versions/:version": "apps:read",
  "GET /api/v1/config/catalog/:layer/:name/diff": "apps:read",
  "POST /api/v1/config/catalog/:layer/:name/versions": "platform:write",
  "POST /api/v1/config/catalog/:layer/:name/gray": "platform:write",
  "POST /api/v1/config/catalog/:layer/:name/gray/rollback": "platform:write",

  // secrets (routes/secrets.ts; consumers' HS256 secrets in routes/consumers.ts): values go in, never out,
  // but to the agent running an instance (heartbeat) and to gateways checking JWTs
  "GET /api/v1/apps/:app/secrets": "secrets:read",
  "PUT /api/v1/apps/:app/secrets/:name": "secrets:write",
  "DELETE /api/v1/apps/:app/secrets/:name": "secrets:write",
  "POST /api/v1/secrets/rotate-key": "platform:write",
  // add-ons (routes/addons.ts): creating, binding and destroying one sets secrets and deploys: a deployer's act
  "GET /api/v1/addons": "apps:read",
  "POST /api/v1/addons": "apps:write",
  "GET /api/v1/addons/:addon": "apps:read",
  "DELETE /api/v1/addons/:addon": "apps:write",
  "POST /api/v1/addons/:addon/attach": "apps:write",
  "POST /api/v1/addons/:addon/detach": "apps:write",
  "POST /api/v1/addons/:addon/backups": "apps:write",
  "GET /api/v1/addons/:addon/backups": "apps:read",
  "POST /api/v1/addons/:addon/backups/:id/restore": "apps:write",
  "DELETE /api/v1/addons/:addon/backups/:id": "apps:write",
  "PUT /api/v1/addons/:addon/backup-policy": "apps:write",
  "DELETE /api/v1/addons/:addon/backup-policy": "apps:write",
  "POST /api/v1/addons/:addon/rotate": "apps:write",
  "PATCH /api/v1/addons/:addon": "apps:write",
  "GET /api/v1/addon-backups": "apps:read",
  "DELETE /api/v1/addon-backups/:id": "apps:write",
  // every tenant sees the plans; registering an external broker (a URL herd fetches) is the platform's
  "GET /api/v1/addon-plans": "apps:read",
  "GET /api/v1/addon-brokers": "platform:read",
  "POST /api/v1/addon-brokers": "platform:write",
  "POST /api/v1/addon-brokers/:broker/refresh": "platform:write",
  "DELETE /api/v1/addon-brokers/:broker": "platform:write",
  // a tenant's own brokers: its owner registers them (a URL herd fetches, through the same URL guard)
  "GET /api/v1/tenant-brokers": "apps:read",
  "POST /api/v1/tenant-brokers": "brokers:write",
  "POST /api/v1/tenant-brokers/:broker/refresh": "brokers:write",
  "DELETE /api/v1/tenant-brokers/:broker": "brokers:write",
  "GET /api/v1/gateways/jwt-secrets": "gateway:sync",
  "GET /api/v1/gateways/certificates/:host": "gateway:sync",
  "GET /api/v1/gateways/acme-challenges/:token": "gateway:sync",

  // nodes and the agent protocol (routes/platform.ts, cluster.ts, logs.ts)
  "GET /api/v1/nodes": "platform:read",
  "POST /api/v1/nodes/:name/cordon": "platform:write",
  "POST /api/v1/nodes/:name/uncordon": "platform:write",
  "POST /api/v1/nodes/:name/drain": "platform:write",
  "DELETE /api/v1/nodes/:name": "platform:write",
  "POST /api/v1/nodes/:name/join": "node:join",
  "POST /api/v1/nodes/:name/heartbeat": "node:agent",
  "GET /api/v1/nodes/:name/wait": "node:agent",
  "GET /api/v1/slugs/:digest": "node:agent",
  "POST /api/v1/registry/images": "node:agent",
  "GET /api/v1/registry/kept": "node:agent",
  "POST /api/v1/registry/credentials": "node:agent",
  "GET /api/v1/runtimes/:digest": "node:agent",
  "POST /api/v1/logs": "node:agent",
  "GET /api/v1/snapshot": "gateway:sync",
  "GET /api/v1/watch": "gateway:sync",

  // logs (routes/logs.ts)
  "GET /api/v1/logs": "telemetry:read",
  "GET /api/v1/logs/stream": "telemetry:read",
  "GET /api/v1/logs/stats": "platform:read",

  // traces (routes/traces.ts)
  "GET /api/v1/traces": "telemetry:read",
  "GET /api/v1/traces/:id": "telemetry:read",
  "GET /api/v1/traces/map": "telemetry:read",
  "GET /api/v1/traces/top": "telemetry:read",
  "GET /api/v1/traces/stats": "platform:read",
  "POST /api/v1/traces/otlp/v1/traces": "telemetry:write",
  "POST /api/v1/otlp/v1/traces": "telemetry:write",
  "POST /api/v1/otlp/v1/metrics": "telemetry:write",
  "POST /api/v1/otlp/v1/logs": "telemetry:write",
  "POST /api/v1/traces/zipkin/api/v2/spans": "telemetry:write",
  "POST /api/v1/traces/gateway": "gateway:sync",

  // metrics (routes/metrics.ts)
  "POST /api/v1/metrics/write": "telemetry:write",
  "GET /api/v1/metrics/stats": "platform:read",
  "GET /api/v1/metrics/targets": "platform:read",
  "PUT /api/v1/metrics/targets/:name": "platform:write",
  "DELETE /api/v1/metrics/targets/:name": "platform:write",
  "GET /api/v1/prom/sd": "platform:read",
  "GET /api/v1/prom/api/v1/query": "telemetry:read",
  "POST /api/v1/prom/api/v1/query": "telemetry:read",
  "GET /api/v1/prom/api/v1/query_range": "telemetry:read",
  "POST /api/v1/prom/api/v1/query_range": "telemetry:read",
  "GET /api/v1/prom/api/v1/series": "telemetry:read",
  "POST /api/v1/prom/api/v1/series": "telemetry:read",
  "GET /api/v1/prom/api/v1/labels": "telemetry:read",
  "POST /api/v1/prom/api/v1/labels": "telemetry:read",
  "GET /api/v1/prom/api/v1/label/:name/values": "telemetry:read",
  "GET /api/v1/prom/api/v1/metadata": "telemetry:read",
  "POST /api/v1/prom/api/v1/metadata": "telemetry:read",
  "GET /api/v1/prom/api/v1/query_exemplars": "telemetry:read",
  "POST /api/v1/prom/api/v1/query_exemplars": "telemetry:read",
  "GET /api/v1/prom/api/v1/status/buildinfo": "self",

  // alerts (routes/alerts.ts)
  "GET /api/v1/alerts": "telemetry:read",
  "GET /api/v1/alerts/rules": "telemetry:read",
  "GET /api/v1/alerts/rules/:name": "telemetry:read",
  "PUT /api/v1/alerts/rules/:name": "apps:write",
  "DELETE /api/v1/alerts/rules/:name": "apps:write",
  "GET /api/v1/alerts/receivers": "apps:read",
  "PUT /api/v1/alerts/receivers/:name": "apps:write",
  "DELETE /api/v1/alerts/receivers/:name": "apps:write",
  "GET /api/v1/alerts/silences": "telemetry:read",
  "POST /api/v1/alerts/silences": "apps:write",
  "DELETE /api/v1/alerts/silences/:id": "apps:write",
};

/** The table's key for a route. */
export const routeKey = (method: string, url: string): string => `${method.toUpperCase()} ${url}`;

/** Whoever a token stands for, with what it may do. Built by auth.ts per token. */
export interface Principal {
  token: Token;
  /** For people and logs: `user alice`, `agent n1`, `gateway`, `ingest acme`. */
  label: string;
  /** A platform admin: every permission in every tenant. */
  admin: boolean;
  /** A user's role per tenant (empty for machines). */
  roles: ReadonlyMap<string, Role>;
}

/** The answer for one request: which tenant it acts in, if the permission is tenant-scoped. */
export interface Decision {
  permission: Permission;
  tenant?: string;
}

/**
 * May `who` use `permission`? `named` is the tenant the request names
 * (`?tenant=`, or the tenant in the path), `node` the node in the path.
 * Returns the tenant the request acts in, or throws 403 (or 400 when a user
 * in several tenants names none).
 */
export function decide(
  who: Principal,
  permission: Permission,
  named: { tenant?: string; node?: string },
): Decision {
  const kind = who.token.kind;
  if (TENANT_PERMISSIONS.has(permission)) {
    const tenant = tenantFor(who, named.tenant);
    if (who.admin) return { permission, tenant };
    if (kind === "user") {
      const role = who.roles.get(tenant);
      if (!role) throw forbidden(`${who.label} has no role in tenant ${tenant}`);
      if (!ROLE_PERMISSIONS[role].has(permission)) {
        throw forbidden(
          `${who.label} is ${article(role)} ${role} in tenant ${tenant}: ${permission} needs ${needs(permission)}`,
        );
      }
      return { permission, tenant };
    }
    if (!MACHINE_PERMISSIONS[kind].has(permission))
      throw forbidden(`a ${kind} token may not use ${permission}`);
    return { permission, tenant };
  }
  if (who.admin) return { permission };
  if (permission === "self" && kind === "user") return { permission };
  if (kind === "user") throw forbidden(`${permission} is for platform admins; ${who.label} is not one`);
  // Machines hold "self" only where MACHINE_PERMISSIONS says so: an ingest token only writes telemetry.
  if (!MACHINE_PERMISSIONS[kind].has(permission)) {
    throw forbidden(
      kind === "join"
        ? "a join token only joins a node (herd agent --join-token)"
        : `a ${kind} token may not use ${permission}`,
    );
  }
  if (permission === "node:agent" && named.node !== undefined && named.node !== who.token.node) {
    throw forbidden(`this agent token belongs to node ${who.token.node}, not ${named.node}`);
  }
  return { permission };
}

/** The tenant a tenant-scoped request acts in (throws when it cannot be told or is refused). */
export function tenantFor(who: Principal, named: string | undefined): string {
  if (who.token.kind === "ingest") {
    if (named !== undefined && named !== who.token.tenant) {
      throw forbidden(`this ingest token writes for tenant ${who.token.tenant}, not ${named}`);
    }
    return who.token.tenant ?? "default";
  }
  if (named !== undefined) return named;
  if (who.admin || who.token.kind !== "user") return "default";
  if (who.roles.size === 1) return [...who.roles.keys()][0];
  if (who.roles.size === 0) throw forbidden(`${who.label} is not a member of any tenant`);
  const tenants = [...who.roles.keys()].sort().join(", ");
  throw new HerdError(
    "invalid",
    `name a tenant (--tenant or ?tenant=): ${who.label} is a member of ${tenants}`,
    [{ field: "querystring.tenant", message: `one of ${tenants}` }],
  );
}

/** The least role that holds a permission, for error messages. */
function needs(permission: Permission): string {
  for (const role of ["viewer", "deployer", "owner"] as const) {
    if (ROLE_PERMISSIONS[role].has(permission)) return `the ${role} role or more`;
  }
  return "a platform admin";
}

const article = (role: Role) => (role === "owner" ? "an" : "a");
const forbidden = (message: string) => new HerdError("forbidden", message);
