/**
 * The remediation engine's policy per app (controllers/remediation/).
 *
 *   GET  /apps/:app/remediation          rules in force, switches, budget, recent decisions (viewer)
 *   PUT  /apps/:app/remediation          rules, dryRun, paused, budgetPerHour, … (deployer)
 *   POST /apps/:app/remediation/pause    the engine leaves the app alone (deployer)
 *   POST /apps/:app/remediation/resume
 */

import type { FastifyInstance } from "fastify";
import { systemClock } from "../../common/clock.ts";
import { budgetLeft } from "../../controllers/remediation/budget.ts";
import { readPolicy, updatePolicy } from "../../controllers/remediation/policy.ts";
import {
  BUILT_IN_RULES,
  DEFAULT_BUDGET_PER_HOUR,
  DEFAULT_OUTCOME_AFTER_S,
  DEFAULT_RELEASE_WINDOW_S,
  type RemediationBody,
  RemediationBodySchema,
  type RemediationPolicy,
} from "../../model/remediation.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, TenantQuery, tenantOf } from "../schemas.ts";
import { typeboxValidator } from "../validate.ts";
import { existingApp } from "./existing-app.ts";

/** What GET (and every write) answers: the policy with its defaults filled in and the budget's use. */
export interface RemediationStatus extends RemediationPolicy {
  /** Whether `rules` are the built-in ones. */
  builtIn: boolean;
  budget: { used: number; limit: number };
}

export function remediationRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;

  const liveApp = (tenant: string, app: string) => existingApp(store, tenant, app, { live: true });

  const status = (p: RemediationPolicy): RemediationStatus => {
    const { used, limit } = budgetLeft(p, systemClock.now());
    return {
      ...p,
      rules: p.rules ?? [...BUILT_IN_RULES],
      builtIn: p.rules === undefined,
      budgetPerHour: p.budgetPerHour ?? DEFAULT_BUDGET_PER_HOUR,
      releaseWindowS: p.releaseWindowS ?? DEFAULT_RELEASE_WINDOW_S,
      outcomeAfterS: p.outcomeAfterS ?? DEFAULT_OUTCOME_AFTER_S,
      budget: { used, limit },
    };
  };

  const write = async (tenant: string, app: string, body: RemediationBody, what: string) => {
    await liveApp(tenant, app);
    const p = await updatePolicy(store, systemClock, tenant, app, body);
    await deps.events.record({ tenant, app, reason: "RemediationPolicyChanged", message: what });
    return status(p);
  };

  api.get(
    "/apps/:app/remediation",
    {
      schema: {
        summary: "The remediation engine's rules, switches, budget and recent decisions for an app",
        tags: ["remediation"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await liveApp(tenant, app);
      return status((await readPolicy(store, tenant, app, systemClock.now())).policy);
    },
  );

  api.put(
    "/apps/:app/remediation",
    {
      schema: {
        summary: "Set an app's remediation rules, dry run, pause or budget (absent fields keep their value)",
        description: "`builtIn: true` goes back to the built-in rules. docs/remediation.md",
        tags: ["remediation"],
        params: AppParams,
        querystring: TenantQuery,
        body: RemediationBodySchema,
      },
      validatorCompiler: typeboxValidator({
        params: AppParams,
        querystring: TenantQuery,
        body: RemediationBodySchema,
      }),
    },
    async (req) => {
      const { app } = req.params as { app: string };
      const body = req.body as RemediationBody;
      const parts = Object.entries(body).map(([k, v]) =>
        k === "rules"
          ? `rules: ${(v as { name: string }[]).map((r) => r.name).join(", ") || "none"}`
          : `${k}: ${v}`,
      );
      return write(tenantOf(req), app, body, `remediation policy set: ${parts.join("; ")}`);
    },
  );

  for (const [action, paused] of [
    ["pause", true],
    ["resume", false],
  ] as const) {
    api.post(
      `/apps/:app/remediation/${action}`,
      {
        schema: {
          summary: paused
            ? "Pause the remediation engine for an app: no decisions until resumed"
            : "Resume the remediation engine for an app",
          tags: ["remediation"],
          params: AppParams,
          querystring: TenantQuery,
        },
      },
      async (req) => {
        const { app } = req.params as { app: string };
        return write(
          tenantOf(req),
          app,
          { paused },
          `remediation ${paused ? "paused" : "resumed"} for ${app}`,
        );
      },
    );
  }
}
