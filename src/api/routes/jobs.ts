/**
 * Runs and scheduled jobs of an app (controllers/jobs.ts). A run's output is
 * in the app's log stream under its id (`GET /apps/:app/logs?instance=ID`).
 *
 *   POST /apps/:app/runs              {command, service?, timeout?} ─► 201 Run (deployer: it runs with the app's secrets)
 *   GET  /apps/:app/runs[?job=&kind=] ─► {items: Run[]} newest first (viewer)
 *   GET  /apps/:app/runs/:id          ─► Run (viewer)
 *   POST /apps/:app/runs/:id/stop     ─► Run (deployer)
 *   GET  /apps/:app/jobs              ─► {items: JobView[]}: each scheduled job, its next time and last run (viewer)
 */

import { type Static, Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { HerdError } from "../../common/errors.ts";
import { DEFAULT_JOB_TIMEOUT_MS, type JobView, nextFire, type Run } from "../../model/job.ts";
import { appKey, type Service } from "../../model/objects.ts";
import { DEADLINE_HELP, parseDeadline } from "../../model/rollout.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, TenantQuery, tenantOf } from "../schemas.ts";
import { existingApp } from "./existing-app.ts";

const RunBody = T.Object(
  {
    command: T.String({
      minLength: 1,
      maxLength: 16 * 1024,
      description: "run by /bin/sh -c in the app's dir",
    }),
    service: T.Optional(
      T.String({ description: "whose env, secrets and resources (default: web, or the only service)" }),
    ),
    timeout: T.Optional(T.Union([T.String(), T.Number()], { description: `${DEADLINE_HELP}; default 1h` })),
  },
  { additionalProperties: false },
);

const RunParams = T.Object({
  app: AppParams.properties.app,
  id: T.String({ pattern: "^[a-z]{3}-[a-z0-9]{1,40}$" }),
});
const RunsQuery = T.Object({
  tenant: TenantQuery.properties.tenant,
  job: T.Optional(T.String()),
  kind: T.Optional(T.Union([T.Literal("one-off"), T.Literal("release"), T.Literal("job")])),
  limit: T.Optional(T.Integer({ minimum: 1, maximum: 1000 })),
});

export function jobRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const jobs = () => deps.controllers.jobs;

  api.post(
    "/apps/:app/runs",
    {
      schema: {
        summary: "Start a one-off process from the app's current release (herd run)",
        description:
          "Runs with the service's env, secrets and resources, in the same sandbox as its instances, on a node the scheduler picks. Its output is in the app's logs under the run's id; its exit code is in the run once it ends.",
        tags: ["jobs"],
        params: AppParams,
        querystring: TenantQuery,
        body: RunBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      const body = req.body as Static<typeof RunBody>;
      await existingApp(deps.store, tenant, app, { live: true });
      const timeoutMs = body.timeout === undefined ? DEFAULT_JOB_TIMEOUT_MS : parseDeadline(body.timeout);
      if (timeoutMs === undefined)
        throw new HerdError("invalid", `timeout: must be ${DEADLINE_HELP}`, [
          { field: "timeout", message: `must be ${DEADLINE_HELP}` },
        ]);
      const run = await jobs().startRun({
        tenant,
        app,
        ...(body.service ? { service: body.service } : {}),
        command: body.command,
        timeoutMs,
        kind: "one-off",
        createdBy: req.herd.principal.label,
      });
      reply.code(201);
      return run;
    },
  );

  api.get(
    "/apps/:app/runs",
    {
      schema: {
        summary: "The app's runs (one-off, release phases, scheduled), newest first",
        tags: ["jobs"],
        params: AppParams,
        querystring: RunsQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      const q = req.query as Static<typeof RunsQuery>;
      await existingApp(deps.store, tenant, app);
      const items = (await jobs().listRuns(tenant, app)).filter(
        (r) => (q.job === undefined || r.job === q.job) && (q.kind === undefined || r.kind === q.kind),
      );
      return { items: items.slice(0, q.limit ?? 100).map(withoutSpec) };
    },
  );

  api.get(
    "/apps/:app/runs/:id",
    {
      schema: {
        summary: "One run: state, exit code, last lines",
        tags: ["jobs"],
        params: RunParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { app, id } = req.params as { app: string; id: string };
      return withoutSpec(await jobs().getRun(tenantOf(req), app, id));
    },
  );

  api.post(
    "/apps/:app/runs/:id/stop",
    {
      schema: {
        summary: "Stop a run (SIGTERM, then SIGKILL after 10 s)",
        tags: ["jobs"],
        params: RunParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { app, id } = req.params as { app: string; id: string };
      const who = req.herd.principal.label;
      return withoutSpec(await jobs().stopRun(tenantOf(req), app, id, "stopped", `stopped by ${who}`));
    },
  );

  api.get(
    "/apps/:app/jobs",
    {
      schema: {
        summary: "The app's scheduled jobs: schedule, policy, next time, last run",
        tags: ["jobs"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(deps.store, tenant, app);
      const services = (await deps.store.list<Service>("service", { prefix: `${appKey(tenant, app)}/` }))
        .items;
      const runs = await jobs().listRuns(tenant, app);
      const now = Date.now();
      const items: JobView[] = [];
      for (const { value: svc } of services) {
        for (const [name, spec] of Object.entries(svc.spec.jobs ?? {})) {
          const last = runs.find((r) => r.job === name);
          const next = nextFire(spec.schedule, now);
          items.push({
            name,
            service: svc.name,
            release: svc.release,
            ...spec,
            next: next === undefined ? null : new Date(next).toISOString(),
            ...(last
              ? {
                  last: {
                    id: last.id,
                    state: last.state,
                    exitCode: last.exitCode,
                    scheduledAt: last.scheduledAt,
                    startedAt: last.startedAt,
                    finishedAt: last.finishedAt,
                    message: last.message,
                  },
                }
              : {}),
          });
        }
      }
      return { items: items.sort((a, b) => a.name.localeCompare(b.name)) };
    },
  );
}

/** A run without what the agent needs (the slug digest and env are the release's; env values may be private). */
function withoutSpec(r: Run): Omit<Run, "spec"> {
  const { spec: _spec, ...rest } = r;
  return rest;
}
