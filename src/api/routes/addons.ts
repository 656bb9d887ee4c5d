/**
 * Add-ons (src/addons/): managed PostgreSQL servers run as pet apps of the
 * tenant, bound to apps by a URL secret.
 *
 *   GET    /addons                      ─► {items: Addon[]} (viewer)
 *   POST   /addons {kind, plan?, name?, app?, var?, fromBackup?} ─► 201 {addon, deploy, binding?} (deployer)
 *   GET    /addons/:addon               ─► Addon + state of its server (viewer)
 *   DELETE /addons/:addon?confirm=NAME  ─► 200 (deployer): detaches every app, stops the server, data gone
 *   POST   /addons/:addon/attach {app, var?, addonTenant?, parameters?} ─► 201 {binding, deploy?} (deployer)
 *   GET    /addon-backups               ─► {items: FinalAddonBackup[]} (viewer): destroyed add-ons' final backups
 *   DELETE /addon-backups/:id           ─► {deleted} (deployer)
 *   POST   /addons/:addon/detach {app, withoutBackup?} ─► {deploy?} (deployer)
 *   POST   /addons/:addon/backups       ─► 201 AddonBackup (deployer; postgres: pg_dump of the bound databases)
 *   GET    /addons/:addon/backups       ─► {items: AddonBackup[]} (viewer)
 *   POST   /addons/:addon/backups/:id/restore ─► AddonBackup (deployer)
 *   DELETE /addons/:addon/backups/:id   ─► {deleted} (deployer)
 *   PUT    /addons/:addon/backup-policy {schedule, keep} ─► Addon (deployer); DELETE stops it
 *   POST   /addons/:addon/rotate {app?} ─► {rotated: [{app, deploy?}]} (deployer): new credentials, a new
 *          release per bound app, the old ones revoked once it has rolled out (a broker's: a new binding)
 *   PATCH  /addons/:addon {plan?, parameters?} ─► {addon, deploy?, pending?} (deployer): another plan
 * DELETE takes a final backup first (kept, named in the reply) unless ?withoutBackup=true.
 *
 * External Open Service Brokers (addons/brokers.ts): their services are more kinds.
 *   GET    /addon-plans                 ─► {items: PlanView[]} (viewer): herd's kinds and plans, then each broker's
 *   GET    /addon-brokers               ─► {items: AddonBroker[]} (platform admin)
 *   POST   /addon-brokers {name, url, user?, password?} ─► 201 AddonBroker (platform admin): its catalog fetched
 *   POST   /addon-brokers/:broker/refresh ─► AddonBroker (platform admin): the catalog fetched again
 *   DELETE /addon-brokers/:broker       ─► 200 (platform admin; 409 while it runs add-ons)
 * A tenant's own brokers (only it sees them; its owner registers them):
 *   GET    /tenant-brokers ─► {items} (viewer) · POST /tenant-brokers {name, url, user?, password?} ─► 201 (owner)
 *   POST   /tenant-brokers/:broker/refresh · DELETE /tenant-brokers/:broker (owner)
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { Addons } from "../../addons/addons.ts";
import { Brokers } from "../../addons/brokers.ts";
import { deleteFinal, listFinal } from "../../addons/final-backups.ts";
import { HerdError } from "../../common/errors.ts";
import { Rounds } from "../../common/rounds.ts";
import type { ApiDeps } from "../deps.ts";
import { TenantQuery, tenantOf } from "../schemas.ts";
import { actorOf } from "./secrets.ts";

const Name = T.String({ pattern: "^[a-z][a-z0-9-]{0,39}$" });
const Var = T.String({
  pattern: "^[A-Z_][A-Z0-9_]{0,63}$",
  description: "the env variable that carries the URL (default DATABASE_URL; redis: REDIS_URL)",
});
const AddonParams = T.Object({ addon: Name });
const BackupPolicy = T.Object(
  {
    schedule: T.String({ minLength: 1, description: 'cron, UTC: "0 3 * * *"' }),
    keep: T.Optional(T.Integer({ minimum: 1, maximum: 100, description: "backups kept (default 7)" })),
  },
  { additionalProperties: false },
);
const Parameters = T.Record(T.String({ maxLength: 200 }), T.Unknown(), {
  description: "a broker's service: provision, update or bind parameters, checked against the plan's schema",
});
const policyOf = (p: { schedule: string; keep?: number }) => ({ schedule: p.schedule, keep: p.keep ?? 7 });
const CreateBody = T.Object(
  {
    kind: T.String({
      minLength: 1,
      maxLength: 100,
      description: "postgres, redis, or a broker's service (SERVICE or BROKER/SERVICE; herd addons plans)",
    }),
    backup: T.Optional(BackupPolicy),
    plan: T.Optional(
      T.String({ maxLength: 100, description: "small (default), medium, large; a broker's: its plan names" }),
    ),
    name: T.Optional(Name),
    app: T.Optional(Name),
    var: T.Optional(Var),
    parameters: T.Optional(Parameters),
    fromBackup: T.Optional(
      T.String({
        pattern: "^[a-z0-9]{1,40}$",
        description: "a destroyed add-on's final backup (GET /addon-backups) restored into the new one",
      }),
    ),
  },
  { additionalProperties: false },
);
const PlanBody = T.Object(
  {
    plan: T.Optional(T.String({ minLength: 1, maxLength: 100, description: "the plan to move to" })),
    parameters: T.Optional(Parameters),
  },
  { additionalProperties: false },
);
const AttachBody = T.Object(
  {
    app: Name,
    var: T.Optional(Var),
    addonTenant: T.Optional(T.String({ description: "the add-on's tenant: only the app's own is allowed" })),
    parameters: T.Optional(Parameters),
  },
  { additionalProperties: false },
);
const BackupParams = T.Object({ addon: Name, id: T.String({ pattern: "^[a-z0-9]{1,20}$" }) });
const DetachBody = T.Object(
  {
    app: Name,
    withoutBackup: T.Optional(
      T.Boolean({ description: "postgres: drop the app's database without the backup taken before it" }),
    ),
  },
  { additionalProperties: false },
);
const DestroyQuery = T.Object({
  tenant: TenantQuery.properties.tenant,
  confirm: T.Optional(T.String()),
  withoutBackup: T.Optional(T.Boolean({ description: "destroy without a final backup" })),
  purge: T.Optional(
    T.Boolean({ description: "a broker's add-on: forget it without asking the broker (gone for good)" }),
  ),
});
const RotateBody = T.Object({ app: T.Optional(Name) }, { additionalProperties: false });

/** How often bindings' URLs are checked against where each server runs. */
const SYNC_MS = 3000;

const BrokerParams = T.Object({ broker: Name });
const BrokerBody = T.Object(
  {
    name: Name,
    url: T.String({ minLength: 1, maxLength: 2000, description: "the broker's base URL (http or https)" }),
    user: T.Optional(T.String({ minLength: 1, maxLength: 200 })),
    password: T.Optional(
      T.String({ minLength: 1, maxLength: 1000, description: "kept in the secret store" }),
    ),
  },
  { additionalProperties: false },
);

export function addonRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const brokers = new Brokers({ store: deps.store, secrets: deps.secrets, guard: deps.guard });
  const addons = new Addons({
    brokers,
    store: deps.store,
    secrets: deps.secrets,
    deploys: deps.controllers.deploys,
    events: deps.events,
    artifacts: deps.artifacts,
    build: (o) => deps.build(o),
  });
  // The leader alone follows brokers' operations and takes scheduled backups (api/leader-loops.ts).
  const sync = new Rounds(
    async () => {
      await addons.sync().catch((err) => api.log.warn({ err }, "add-on sync failed"));
      await addons.scheduledBackups();
    },
    (err) => api.log.warn({ err }, "scheduled add-on backups failed"),
  );
  deps.leaderLoops.add("add-on sync", { start: () => sync.start(SYNC_MS), stop: () => sync.stop() });

  api.get(
    "/addon-plans",
    {
      schema: {
        summary: "Every add-on kind and plan: herd's own, then each external broker's",
        tags: ["addons"],
        querystring: TenantQuery,
      },
    },
    async (req) => ({ items: await brokers.plans(tenantOf(req)) }),
  );

  api.get(
    "/addon-brokers",
    { schema: { summary: "The external Open Service Brokers herd knows", tags: ["addons"] } },
    async () => ({ items: await brokers.list() }),
  );

  api.post(
    "/addon-brokers",
    {
      schema: {
        summary: "Register an Open Service Broker: its catalog's services become add-on kinds",
        tags: ["addons"],
        body: BrokerBody,
      },
    },
    async (req, reply) => {
      const out = await brokers.add(
        req.body as { name: string; url: string; user?: string; password?: string },
        actorOf(req),
      );
      reply.code(201);
      return out;
    },
  );

  api.post(
    "/addon-brokers/:broker/refresh",
    {
      schema: { summary: "Fetch a broker's catalog again", tags: ["addons"], params: BrokerParams },
    },
    async (req) => brokers.refresh((req.params as { broker: string }).broker),
  );

  api.delete(
    "/addon-brokers/:broker",
    {
      schema: {
        summary: "Forget a broker (refused while it runs add-ons)",
        tags: ["addons"],
        params: BrokerParams,
      },
    },
    async (req) => {
      const name = (req.params as { broker: string }).broker;
      await brokers.remove(name);
      return { removed: name };
    },
  );

  api.get(
    "/tenant-brokers",
    {
      schema: {
        summary: "The tenant's own Open Service Brokers (only it sees them)",
        tags: ["addons"],
        querystring: TenantQuery,
      },
    },
    async (req) => ({ items: await brokers.listOwn(tenantOf(req)) }),
  );

  api.post(
    "/tenant-brokers",
    {
      schema: {
        summary: "Register an Open Service Broker only this tenant sees (its owner's act)",
        tags: ["addons"],
        querystring: TenantQuery,
        body: BrokerBody,
      },
    },
    async (req, reply) => {
      const out = await brokers.add(
        req.body as { name: string; url: string; user?: string; password?: string },
        actorOf(req),
        tenantOf(req),
      );
      reply.code(201);
      return out;
    },
  );

  api.post(
    "/tenant-brokers/:broker/refresh",
    {
      schema: {
        summary: "Fetch the tenant's broker's catalog again",
        tags: ["addons"],
        params: BrokerParams,
        querystring: TenantQuery,
      },
    },
    async (req) => brokers.refresh((req.params as { broker: string }).broker, tenantOf(req)),
  );

  api.delete(
    "/tenant-brokers/:broker",
    {
      schema: {
        summary: "Forget the tenant's broker (refused while it runs add-ons)",
        tags: ["addons"],
        params: BrokerParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const name = (req.params as { broker: string }).broker;
      await brokers.remove(name, tenantOf(req));
      return { removed: name };
    },
  );

  api.get(
    "/addons",
    { schema: { summary: "The tenant's add-ons", tags: ["addons"], querystring: TenantQuery } },
    async (req) => ({
      items: await addons.list(tenantOf(req)),
    }),
  );

  api.post(
    "/addons",
    {
      schema: {
        summary: "Create an add-on (a PostgreSQL server run as a pet app); with app, bind it",
        tags: ["addons"],
        querystring: TenantQuery,
        body: CreateBody,
      },
    },
    async (req, reply) => {
      const { backup, ...body } = req.body as { kind: string; backup?: { schedule: string; keep?: number } };
      const out = await addons.create(
        tenantOf(req),
        { ...body, ...(backup ? { backup: policyOf(backup) } : {}) },
        actorOf(req),
      );
      reply.code(201);
      return out;
    },
  );

  api.get(
    "/addons/:addon",
    {
      schema: {
        summary: "An add-on, its bindings and its server's state",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
      },
    },
    async (req) => addons.info(tenantOf(req), (req.params as { addon: string }).addon),
  );

  api.delete(
    "/addons/:addon",
    {
      schema: {
        summary: "Destroy an add-on and its data (?confirm=<its name>)",
        tags: ["addons"],
        params: AddonParams,
        querystring: DestroyQuery,
      },
    },
    async (req) => {
      const name = (req.params as { addon: string }).addon;
      const q = req.query as { confirm?: string; withoutBackup?: boolean; purge?: boolean };
      const out = await addons.destroy(
        tenantOf(req),
        name,
        q.confirm,
        actorOf(req),
        q.withoutBackup === true,
        q.purge === true,
      );
      return { destroyed: name, ...out };
    },
  );

  api.post(
    "/addons/:addon/attach",
    {
      schema: {
        summary:
          "Bind an add-on to an app: a database and role of its own, its URL as a secret (a new release)",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
        body: AttachBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const body = req.body as {
        app: string;
        var?: string;
        addonTenant?: string;
        parameters?: Record<string, unknown>;
      };
      if (body.addonTenant !== undefined && body.addonTenant !== tenant)
        throw new HerdError(
          "forbidden",
          `add-ons of tenant ${body.addonTenant} cannot be bound to apps of ${tenant}`,
          [{ field: "addonTenant", message: `must be ${tenant}: bindings stay inside a tenant` }],
        );
      const out = await addons.attach(
        tenant,
        (req.params as { addon: string }).addon,
        body.app,
        body.var,
        actorOf(req),
        body.parameters,
      );
      reply.code(201);
      return out;
    },
  );

  api.get(
    "/addon-backups",
    {
      schema: {
        summary: "Final backups of the tenant's destroyed add-ons (restore one: POST /addons {fromBackup})",
        tags: ["addons"],
        querystring: TenantQuery,
      },
    },
    async (req) => ({ items: await listFinal(deps.store, tenantOf(req)) }),
  );

  api.delete(
    "/addon-backups/:id",
    {
      schema: {
        summary: "Forget a destroyed add-on's final backup",
        tags: ["addons"],
        params: T.Object({ id: T.String({ pattern: "^[a-z0-9]{1,40}$" }) }),
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const f = await deleteFinal(deps.store, tenant, (req.params as { id: string }).id);
      await deps.events.record({
        tenant,
        app: f.addon,
        reason: "AddonBackupDeleted",
        message: `final backup ${f.id} of destroyed add-on ${f.addon} deleted by ${actorOf(req)}`,
      });
      return { deleted: f.id };
    },
  );

  api.post(
    "/addons/:addon/backups",
    {
      schema: {
        summary: "Back up an add-on now (postgres: pg_dump of the bound databases; redis: an RDB snapshot)",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
      },
    },
    async (req, reply) => {
      const out = await addons.backup(tenantOf(req), (req.params as { addon: string }).addon, actorOf(req));
      reply.code(201);
      return out;
    },
  );

  api.get(
    "/addons/:addon/backups",
    {
      schema: {
        summary: "An add-on's backups, oldest first",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
      },
    },
    async (req) => ({
      items: (await addons.get(tenantOf(req), (req.params as { addon: string }).addon)).backups ?? [],
    }),
  );

  api.delete(
    "/addons/:addon/backups/:id",
    {
      schema: {
        summary: "Forget one of an add-on's backups (a detach backup, which `keep` never drops, among them)",
        tags: ["addons"],
        params: BackupParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { addon, id } = req.params as { addon: string; id: string };
      await addons.deleteBackup(tenantOf(req), addon, id, actorOf(req));
      return { deleted: id };
    },
  );

  api.post(
    "/addons/:addon/backups/:id/restore",
    {
      schema: {
        summary:
          "Restore a backup (postgres: the bound databases made again as the dump has them; redis: the keyspace replaced)",
        tags: ["addons"],
        params: BackupParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { addon, id } = req.params as { addon: string; id: string };
      return addons.restore(tenantOf(req), addon, id, actorOf(req));
    },
  );

  api.post(
    "/addons/:addon/detach",
    {
      schema: {
        summary:
          "Unbind an add-on from an app: its URL goes (a new release); its database (after a backup) and role are dropped once that has rolled out",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
        body: DetachBody,
      },
    },
    async (req) => {
      const body = req.body as { app: string; withoutBackup?: boolean };
      return addons.detach(
        tenantOf(req),
        (req.params as { addon: string }).addon,
        body.app,
        actorOf(req),
        body.withoutBackup === true,
      );
    },
  );

  api.put(
    "/addons/:addon/backup-policy",
    {
      schema: {
        summary: "Back an add-on up on a schedule (cron, UTC), keeping the last `keep`",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
        body: BackupPolicy,
      },
    },
    async (req) =>
      addons.setBackupPolicy(
        tenantOf(req),
        (req.params as { addon: string }).addon,
        policyOf(req.body as { schedule: string; keep?: number }),
        actorOf(req),
      ),
  );

  api.delete(
    "/addons/:addon/backup-policy",
    {
      schema: {
        summary: "Stop an add-on's scheduled backups (the ones taken stay)",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
      },
    },
    async (req) =>
      addons.setBackupPolicy(tenantOf(req), (req.params as { addon: string }).addon, null, actorOf(req)),
  );

  api.patch(
    "/addons/:addon",
    {
      schema: {
        summary:
          "Move an add-on to another plan (herd's own: its server redeployed in place; a broker's: PATCH when plan_updateable)",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
        body: PlanBody,
      },
    },
    async (req) =>
      addons.changePlan(
        tenantOf(req),
        (req.params as { addon: string }).addon,
        req.body as { plan?: string; parameters?: Record<string, unknown> },
        actorOf(req),
      ),
  );

  api.post(
    "/addons/:addon/rotate",
    {
      schema: {
        summary:
          "Rotate bound apps' credentials: new ones, a new release per app, the old ones revoked once it has rolled out",
        tags: ["addons"],
        params: AddonParams,
        querystring: TenantQuery,
        body: RotateBody,
      },
    },
    async (req) =>
      addons.rotate(
        tenantOf(req),
        (req.params as { addon: string }).addon,
        (req.body as { app?: string } | undefined)?.app,
        actorOf(req),
      ),
  );
}
