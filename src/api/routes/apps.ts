/**
 * Apps and everything under one app: deploys, releases, rollback, scale,
 * instances (ps) and logs.
 */

import { open, rm } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { conflict, HerdError, notFound } from "../../common/errors.ts";
import { restartServices } from "../../controllers/restart.ts";
import { scaleServices } from "../../controllers/scale.ts";
import {
  type App,
  appKey,
  type Deploy,
  type Instance,
  type Release,
  type Service,
  type Tenant,
} from "../../model/objects.ts";
import { qosClass } from "../../model/qos.ts";
import { DEADLINE_HELP, parseDeadline } from "../../model/rollout.ts";
import { endLogWhenFinished, whenServed } from "../deploy-done.ts";
import type { ApiDeps } from "../deps.ts";
import {
  AppParams,
  CreateAppBody,
  DeployQuery,
  DestroyQuery,
  LogsQuery,
  RestartBody,
  RollbackBody,
  ScaleBody,
  type TenantQ,
  TenantQuery,
  tenantOf,
} from "../schemas.ts";
import { existingApp } from "./existing-app.ts";
import { type LogsParams, logQueryOf, serveLogs } from "./logs.ts";
import { actorOf } from "./secrets.ts";
import { drained, streamNdjson } from "./streams.ts";

type Q = TenantQ;

export function appRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store, controllers } = deps;

  const getApp = (tenant: string, name: string) => existingApp(store, tenant, name);

  api.get(
    "/apps",
    { schema: { summary: "List apps", tags: ["apps"], querystring: TenantQuery } },
    async (req) => {
      const tenant = tenantOf(req);
      const apps = (await store.list<App>("app", { prefix: `${tenant}/` })).items.map((o) => o.value);
      const services = (await store.list<Service>("service", { prefix: `${tenant}/` })).items.map(
        (o) => o.value,
      );
      return { items: apps.map((a) => ({ ...a, services: services.filter((s) => s.app === a.name) })) };
    },
  );

  api.post(
    "/apps",
    { schema: { summary: "Create an app", tags: ["apps"], querystring: TenantQuery, body: CreateAppBody } },
    async (req, reply) => {
      const app = await createApp(deps, tenantOf(req), (req.body as { name: string }).name);
      reply.code(201);
      return app;
    },
  );

  api.get(
    "/apps/:app",
    {
      schema: {
        summary: "One app and its services",
        tags: ["apps"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      const o = await getApp(tenant, app);
      const services = (await store.list<Service>("service", { prefix: `${o.key}/` })).items.map((s) => ({
        ...s.value,
        revision: s.revision,
      }));
      return { app: o.value, revision: o.revision, services };
    },
  );

  api.delete(
    "/apps/:app",
    {
      schema: {
        summary: "Destroy an app: stop its instances, delete it",
        tags: ["apps"],
        params: AppParams,
        querystring: DestroyQuery,
      },
    },
    async (req, reply) => {
      const q = req.query as Q & { revision?: number };
      const tenant = tenantOf(req);
      const o = await getApp(tenant, (req.params as { app: string }).app);
      if (q.revision !== undefined && q.revision !== o.revision) {
        throw conflict(`app ${o.value.name} changed since revision ${q.revision} (it is at ${o.revision})`);
      }
      if (!o.value.destroying) {
        await store.put("app", o.key, { ...o.value, destroying: true }, { expectRevision: o.revision });
        await deps.events.record({
          tenant,
          app: o.value.name,
          reason: "AppDestroying",
          message: `destroying app ${o.value.name}`,
        });
      }
      reply.code(202);
      return { app: { ...o.value, destroying: true } };
    },
  );

  api.post(
    "/apps/:app/deploys",
    {
      schema: {
        summary: "Deploy: upload the source as a gzip tarball; build, release and roll out",
        description:
          "Body: the source tree as application/gzip. Creates the app when missing. Follow progress at /apps/{app}/deploys/{id}/log. A rollout that makes no progress for its deadline (?deadline=, else herd.yaml's rollout.deadline, else 120s) fails the deploy; one that cannot be placed on today's nodes fails it at once.",
        tags: ["deploys"],
        params: AppParams,
        querystring: DeployQuery,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      const deadline = (req.query as { deadline?: string }).deadline;
      const deadlineMs = deadline === undefined ? undefined : parseDeadline(deadline);
      if (deadline !== undefined && deadlineMs === undefined) {
        throw new HerdError("invalid", `deadline ${deadline} is out of range: ${DEADLINE_HELP}`, [
          { field: "querystring.deadline", message: `must be ${DEADLINE_HELP}` },
        ]);
      }
      const type = req.headers["content-type"] ?? "";
      if (!/^application\/(gzip|x-gzip|octet-stream)\b/.test(type)) {
        throw new HerdError(
          "invalid",
          "the deploy body must be the source as a gzip tarball (content-type: application/gzip)",
          [{ field: "content-type", message: `is ${type || "missing"}` }],
        );
      }
      const deploy = await deploySource(deps, {
        tenant,
        app,
        body: req.body as Readable,
        length: Number(req.headers["content-length"] ?? 0),
        createdBy: actorOf(req),
        ...(deadlineMs === undefined ? {} : { deadlineMs }),
      });
      reply.code(202);
      return deploy;
    },
  );

  api.get(
    "/apps/:app/deploys/:id",
    {
      schema: { summary: "One deploy", tags: ["deploys"], params: DeployParams(), querystring: TenantQuery },
    },
    async (req) => {
      const { app, id } = req.params as { app: string; id: string };
      const o = await store.get<Deploy>("deploy", `${tenantOf(req)}/${app}/${id}`);
      if (!o) throw notFound(`deploy ${id} of app ${app} does not exist`);
      return o.value;
    },
  );

  api.get(
    "/apps/:app/deploys/:id/log",
    {
      schema: {
        summary: "A deploy's build output and rollout steps, as NDJSON, until it ends",
        tags: ["deploys"],
        params: DeployParams(),
        querystring: TenantQuery,
      },
    },
    async (req, reply) => {
      const { app, id } = req.params as { app: string; id: string };
      const o = await store.get<Deploy>("deploy", `${tenantOf(req)}/${app}/${id}`);
      if (!o) throw notFound(`deploy ${id} of app ${app} does not exist`);
      const finished = o.value.state === "succeeded" || o.value.state === "failed";
      if (finished && !deps.deployLogs.has(id)) {
        throw new HerdError(
          "gone",
          `the log of deploy ${id} is no longer kept (each app keeps its last ${deps.deployLogs.keepPerApp} deploys' logs)`,
        );
      }
      const abort = streamNdjson(reply, deps.shutdown);
      // Rolled out by another server (the leader): the Deploy object says when it ends (api/deploy-done.ts).
      if (!finished) void endLogWhenFinished(store, deps.deployLogs, o.key, id, o.revision, abort.signal);
      for await (const entry of deps.deployLogs.follow(id, abort.signal)) {
        const line = finished ? entry : await whenServed(deps.gateways, entry, abort.signal);
        if (!reply.raw.write(`${JSON.stringify(line)}\n`)) await drained(reply);
      }
      abort.abort();
      reply.raw.end();
    },
  );

  api.get(
    "/apps/:app/releases",
    {
      schema: {
        summary: "Releases, newest first",
        tags: ["releases"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const o = await getApp(tenantOf(req), (req.params as { app: string }).app);
      const items = (await store.list<Release>("release", { prefix: `${o.key}/` })).items.map((r) => ({
        ...r.value,
        current: r.value.version === o.value.release,
      }));
      return { items: items.reverse() };
    },
  );

  api.post(
    "/apps/:app/rollback",
    {
      schema: {
        summary: "Roll back to a release (default: the one before the current)",
        tags: ["releases"],
        params: AppParams,
        querystring: TenantQuery,
        body: RollbackBody,
      },
    },
    async (req, reply) => {
      const { app } = req.params as { app: string };
      const body = (req.body ?? {}) as { version?: number };
      const deploy = await controllers.deploys.rollback(tenantOf(req), app, body.version, actorOf(req));
      reply.code(202);
      return deploy;
    },
  );

  api.post(
    "/apps/:app/scale",
    {
      schema: {
        summary: "Set instance counts per service",
        description:
          "The reply's `unplaced` lists, per service, how many of its instances cannot be placed on today's nodes and why; they stay pending until room appears.",
        tags: ["apps"],
        params: AppParams,
        querystring: TenantQuery,
        body: ScaleBody,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const o = await getApp(tenant, (req.params as { app: string }).app);
      const { services, revisions } = req.body as {
        services: Record<string, number>;
        revisions?: Record<string, number>;
      };
      return scaleServices(
        {
          store,
          events: deps.events,
          unit: deps.settings.unit,
          informer: controllers.informer,
          cluster: () => controllers.services.clusterState(),
        },
        { tenant, app: o.value.name, services, ...(revisions ? { revisions } : {}) },
      );
    },
  );

  api.post(
    "/apps/:app/restart",
    {
      schema: {
        summary: "Restart an app's services (herd restart)",
        description:
          "Cattle are replaced as a rollout replaces them (the new instances serve before the old ones go, within minAvailable); " +
          "pets restart in place one at a time. The reply is at once: the instances whose createdAt (cattle) or startedAt (pets) " +
          "is before restartedAt are the ones still to go. New instances start with the config's current keys in their env.",
        tags: ["apps"],
        params: AppParams,
        querystring: TenantQuery,
        body: RestartBody,
      },
    },
    async (req, reply) => {
      const body = (req.body ?? {}) as { services?: string[] };
      const result = await restartServices(
        { store, events: deps.events },
        {
          tenant: tenantOf(req),
          app: (req.params as { app: string }).app,
          ...(body.services ? { services: body.services } : {}),
          by: actorOf(req),
          now: new Date().toISOString(),
        },
      );
      reply.code(202);
      return result;
    },
  );

  api.get(
    "/apps/:app/instances",
    {
      schema: {
        summary: "Instances of an app (herd ps)",
        description:
          "Each with its QoS class (qos): guaranteed when its CPU ceiling equals its request, else burstable.",
        tags: ["apps"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const o = await getApp(tenant, (req.params as { app: string }).app);
      // The app's instances from the informer's app index, synced: not every instance parsed.
      await controllers.informer.sync();
      const items = controllers.informer
        .by<Instance>("instance", "app", `${tenant}/${o.value.name}`)
        .map((i) => i.value)
        .sort((a, b) => a.service.localeCompare(b.service) || a.createdAt.localeCompare(b.createdAt))
        .map((i) => ({ ...i, qos: qosClass(i.run.resources) }));
      return { items };
    },
  );

  api.get(
    "/apps/:app/logs",
    {
      schema: {
        summary:
          "An app's logs: instance lines and its events; follow=true streams NDJSON, Accept: text/event-stream streams SSE",
        description:
          "Each entry has a seq cursor: reconnect with after=<seq> (SSE: Last-Event-ID) to get exactly what was missed. Filters: service, instance, stream, level (and above), text (substring, any case), since.",
        tags: ["logs"],
        params: AppParams,
        querystring: LogsQuery,
      },
    },
    async (req, reply) => {
      const params = req.query as LogsParams;
      const o = await getApp(tenantOf(req), (req.params as { app: string }).app);
      return serveLogs(req, reply, deps, {
        ...logQueryOf(params, o.value.tenant),
        tenant: o.value.tenant,
        app: o.value.name,
      });
    },
  );
}

/**
 * Starts a deploy of a source tarball (gzip): checks the tenant's upload
 * limit, stores the source, creates the app when missing and builds in the
 * background. `herd deploy`'s upload and `git push` (git/push-deploy.ts) both
 * come here.
 */
export async function deploySource(
  deps: ApiDeps,
  upload: {
    tenant: string;
    app: string;
    body: Readable;
    /** The body's announced length (0: unknown). */
    length: number;
    createdBy: string;
    deadlineMs?: number;
    /** The release's description (default: `Deploy <digest>`). */
    description?: string;
  },
): Promise<Deploy> {
  const { store } = deps;
  const { tenant, app } = upload;
  const limits = (await store.get<Tenant>("tenant", tenant))?.value.limits ?? {};
  const maxUpload = limits.uploadBytes ?? deps.maxUploadBytes;
  if (upload.length > maxUpload) {
    throw new HerdError(
      "too_large",
      `upload is ${upload.length} bytes, the limit is ${maxUpload} bytes (use .herdignore to leave files out)`,
    );
  }
  const existing = await store.get<App>("app", appKey(tenant, app));
  if (existing?.value.destroying) throw conflict(`app ${app} is being destroyed`);
  const { digest } = await deps.artifacts.put(upload.body, maxUpload);
  // Junk fails here, fast: no app, no deploy, no build, nothing kept.
  const path = await deps.artifacts.path(digest);
  if (!(await startsWithGzip(path))) {
    await rm(path, { force: true });
    throw new HerdError("invalid", "the deploy body is not a gzip tarball (herd deploy packs one)", [
      { field: "body", message: "does not start with gzip's magic bytes" },
    ]);
  }
  if (!existing) await createApp(deps, tenant, app);
  const unpack = { maxBytes: limits.unpackBytes, maxEntries: limits.unpackEntries };
  return deps.controllers.deploys.startDeploy(
    tenant,
    app,
    async (log) => {
      const built = await deps.build({
        source: digest,
        tenant,
        app,
        log,
        unpack,
        // A release that would be refused fails before the install (a secret not set, a route taken).
        check: (services) => deps.controllers.deploys.preflight(tenant, app, services),
      });
      return { ...built, source: digest, description: upload.description ?? `Deploy ${digest.slice(0, 7)}` };
    },
    {
      createdBy: upload.createdBy,
      ...(upload.deadlineMs === undefined ? {} : { deadlineMs: upload.deadlineMs }),
    },
  );
}

/** Creates an app (409 when it exists) and records the event. */
async function createApp(deps: ApiDeps, tenant: string, name: string): Promise<App> {
  const app: App = { tenant, name, createdAt: new Date().toISOString(), release: null, latestVersion: 0 };
  try {
    await deps.store.put("app", appKey(tenant, name), app, { expectRevision: 0 });
  } catch (err) {
    if ((err as { code?: string }).code === "conflict") throw conflict(`app ${name} already exists`);
    throw err;
  }
  await deps.events.record({ tenant, app: name, reason: "AppCreated", message: `app ${name} created` });
  return app;
}

function DeployParams() {
  return {
    type: "object",
    properties: { app: AppParams.properties.app, id: { type: "string", pattern: "^[a-z0-9]{1,40}$" } },
    required: ["app", "id"],
  };
}

/** Whether a file starts as gzip does (1f 8b, deflate). */
async function startsWithGzip(path: string): Promise<boolean> {
  const file = await open(path, "r");
  try {
    const { bytesRead, buffer } = await file.read(Buffer.alloc(3), 0, 3, 0);
    return bytesRead === 3 && buffer[0] === 0x1f && buffer[1] === 0x8b && buffer[2] === 0x08;
  } finally {
    await file.close();
  }
}
