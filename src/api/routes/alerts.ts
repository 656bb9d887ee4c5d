/**
 * Alerts: the active alerts, rules, webhook receivers and silences of a
 * tenant. Rules, receivers and silences are store objects; the evaluator
 * (observe/alerts/evaluator.ts) reads them every round, so a change counts
 * from the next evaluation.
 *
 *   GET /alerts                                     active (pending, firing) alerts
 *   GET /alerts/rules  GET|PUT|DELETE /alerts/rules/:name
 *   GET /alerts/receivers  PUT|DELETE /alerts/receivers/:name   (header values are secrets: in, never out)
 *   GET|POST /alerts/silences  DELETE /alerts/silences/:id
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, type FieldProblem, HerdError, notFound } from "../../common/errors.ts";
import { newId } from "../../common/ids.ts";
import {
  type AlertRuleBody,
  AlertRuleBodySchema,
  type AlertRuleObject,
  parseMatcher,
  type Receiver,
  type ReceiverBody,
  ReceiverBodySchema,
  ruleProblems,
  type Silence,
  type SilenceBody,
  SilenceBodySchema,
  type SilenceMatcher,
} from "../../model/alerts.ts";
import { DEFAULT_RULES } from "../../observe/alerts/defaults.ts";
import { type ActiveAlert, MAX_RULES_PER_TENANT } from "../../observe/alerts/evaluator.ts";
import { dropReceiverHeaders, sealReceiverHeaders } from "../../secrets/receiver-headers.ts";
import { receiverScope } from "../../secrets/secret-store.ts";
import type { StoredObject } from "../../store/store.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, RevisionQuery, type TenantQ, TenantQuery, tenantOf } from "../schemas.ts";
import { typeboxValidator } from "../validate.ts";
import { actorOf } from "./secrets.ts";

const RuleName = T.String({
  pattern: "^[a-z][a-z0-9-]{0,62}$",
  description: "lowercase letters, digits and dashes",
});
const RuleParams = T.Object({ name: RuleName });
const ReceiverParams = T.Object({ name: Name });
const SilenceParams = T.Object({ id: T.String({ pattern: "^[A-Za-z0-9]{1,32}$" }) });
type Q = TenantQ;

/** An active alert as the API shows it. */
export function alertView(a: ActiveAlert) {
  return {
    rule: a.rule,
    state: a.state,
    severity: a.severity,
    labels: a.labels,
    annotations: a.annotations,
    value: a.value,
    since: new Date(a.activeAt).toISOString(),
    firingSince: a.firedAt === undefined ? null : new Date(a.firedAt).toISOString(),
    silencedBy: a.silencedBy ?? null,
    ...(a.app ? { app: a.app } : {}),
    fingerprint: a.fingerprint,
  };
}

export function alertRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store, alerts } = deps;

  /** The revision check of PUT and DELETE; 409 names both revisions. */
  const checkRevision = (what: string, q: Q, current: StoredObject<unknown> | undefined) => {
    if (q.revision !== undefined && q.revision !== (current?.revision ?? 0)) {
      throw conflict(
        current
          ? `${what} changed since revision ${q.revision} (it is at ${current.revision}): read it again`
          : `${what} does not exist (expected revision ${q.revision})`,
      );
    }
  };
  const typebox = (parts: Parameters<typeof typeboxValidator>[0]) => ({
    validatorCompiler: typeboxValidator(parts),
  });

  api.get(
    "/alerts",
    {
      schema: { summary: "Active alerts (pending and firing)", tags: ["alerts"], querystring: TenantQuery },
      ...typebox({ querystring: TenantQuery }),
    },
    async (req) => ({ items: alerts.active(tenantOf(req)).map(alertView) }),
  );

  api.get(
    "/alerts/rules",
    {
      schema: {
        summary:
          "Rules: the tenant's (API and herd.yaml) and the built-in ones, with how their last evaluation went",
        tags: ["alerts"],
        querystring: TenantQuery,
      },
      ...typebox({ querystring: TenantQuery }),
    },
    async (req) => {
      const tenant = tenantOf(req);
      const stored = (await store.list<AlertRuleObject>("alert_rule", { prefix: `${tenant}/` })).items;
      const inForce = await alerts.rules();
      const count = (key: string) => alerts.active().filter((a) => a.ruleKey === key).length;
      const health = (key: string) => alerts.health(key) ?? null;
      const items: unknown[] = [];
      for (const r of DEFAULT_RULES) {
        const replaced = tenant === "default" && stored.some((o) => o.value.name === r.name);
        const key = `default/${r.name}`;
        items.push({
          ...r,
          ...(replaced ? { replaced: true } : {}),
          active: count(key),
          health: health(key),
        });
      }
      for (const o of stored) {
        const key = `api/${tenant}/${o.value.name}`;
        items.push({
          ...o.value,
          source: "api",
          revision: o.revision,
          active: count(key),
          health: health(key),
        });
      }
      for (const r of inForce) {
        if (r.source !== "herd.yaml" || r.tenant !== tenant) continue;
        items.push({ ...r, active: count(r.key), health: health(r.key) });
      }
      return { items };
    },
  );

  api.get(
    "/alerts/rules/:name",
    {
      schema: {
        summary: "One rule (an API rule, else the built-in one)",
        tags: ["alerts"],
        params: RuleParams,
        querystring: TenantQuery,
      },
      ...typebox({ params: RuleParams, querystring: TenantQuery }),
    },
    async (req) => {
      const { name } = req.params as { name: string };
      const tenant = tenantOf(req);
      const o = await store.get<AlertRuleObject>("alert_rule", `${tenant}/${name}`);
      if (o) return { ...o.value, source: "api", revision: o.revision };
      const builtin = DEFAULT_RULES.find((r) => r.name === name);
      if (builtin) return builtin;
      throw notFound(`no alert rule ${name} (herd alerts rules lists them)`);
    },
  );

  api.put(
    "/alerts/rules/:name",
    {
      schema: {
        summary: "Create or replace a rule; in the default tenant, a built-in rule's name replaces it",
        description:
          "expr is a PromQL instant query (fires for every series it returns), or with op and threshold `(expr) op threshold`. 400 names the field; 409 on a stale revision.",
        tags: ["alerts"],
        params: RuleParams,
        querystring: RevisionQuery,
        body: AlertRuleBodySchema,
      },
      ...typebox({ params: RuleParams, querystring: RevisionQuery, body: AlertRuleBodySchema }),
    },
    async (req, reply) => {
      const q = req.query as Q;
      const tenant = tenantOf(req);
      const { name } = req.params as { name: string };
      const body = req.body as AlertRuleBody;
      fieldProblems(ruleProblems(body));
      if (tenant === "default" && DEFAULT_RULES.some((r) => r.name === name) && !req.herd.principal.admin) {
        throw new HerdError(
          "forbidden",
          `${name} is a built-in rule, which sees every tenant: only a platform admin replaces it`,
        );
      }
      const key = `${tenant}/${name}`;
      const current = await store.get<AlertRuleObject>("alert_rule", key);
      checkRevision(`rule ${name}`, q, current);
      if (!current) {
        const count = (await store.list<AlertRuleObject>("alert_rule", { prefix: `${tenant}/` })).items
          .length;
        if (count >= MAX_RULES_PER_TENANT) {
          throw conflict(
            `tenant ${tenant} has ${count} alert rules, the most a tenant may have (${MAX_RULES_PER_TENANT}): delete one or change an existing rule`,
          );
        }
      }
      const now = new Date().toISOString();
      const value: AlertRuleObject = {
        ...body,
        tenant,
        name,
        createdAt: current?.value.createdAt ?? now,
        updatedAt: now,
      };
      const saved = await store.put("alert_rule", key, value, { expectRevision: current?.revision ?? 0 });
      reply.code(current ? 200 : 201);
      return { ...saved.value, source: "api", revision: saved.revision };
    },
  );

  api.delete(
    "/alerts/rules/:name",
    {
      schema: {
        summary: "Delete a rule (a replaced built-in rule comes back); its firing alerts resolve",
        tags: ["alerts"],
        params: RuleParams,
        querystring: RevisionQuery,
      },
      ...typebox({ params: RuleParams, querystring: RevisionQuery }),
    },
    async (req) => {
      const q = req.query as Q;
      const { name } = req.params as { name: string };
      const key = `${tenantOf(req)}/${name}`;
      const current = await store.get<AlertRuleObject>("alert_rule", key);
      if (!current)
        throw notFound(`no alert rule ${name} set through the API (herd alerts rules lists them)`);
      checkRevision(`rule ${name}`, q, current);
      await store.delete("alert_rule", key, { expectRevision: current.revision });
      return { deleted: { ...current.value, revision: current.revision } };
    },
  );

  api.get(
    "/alerts/receivers",
    {
      schema: {
        summary: "Webhook receivers and how their deliveries went",
        tags: ["alerts"],
        querystring: TenantQuery,
      },
      ...typebox({ querystring: TenantQuery }),
    },
    async (req) => {
      const tenant = tenantOf(req);
      const items = (await store.list<Receiver>("alert_receiver", { prefix: `${tenant}/` })).items;
      return {
        items: items.map((o) => ({
          ...o.value,
          revision: o.revision,
          delivery: alerts.notifier.status(o.key),
        })),
      };
    },
  );

  api.put(
    "/alerts/receivers/:name",
    {
      schema: {
        summary: "Create or replace a webhook receiver: firing and resolved alerts are POSTed to its url",
        tags: ["alerts"],
        params: ReceiverParams,
        querystring: RevisionQuery,
        body: ReceiverBodySchema,
      },
      ...typebox({ params: ReceiverParams, querystring: RevisionQuery, body: ReceiverBodySchema }),
    },
    async (req, reply) => {
      const q = req.query as Q;
      const tenant = tenantOf(req);
      const { name } = req.params as { name: string };
      const body = req.body as ReceiverBody;
      try {
        new URL(body.url);
      } catch {
        fieldProblems([{ field: "url", message: "is not a URL" }]);
      }
      const seen = new Map<string, string>();
      for (const header of Object.keys(body.headers ?? {})) {
        const other = seen.get(header.toLowerCase());
        if (other !== undefined)
          fieldProblems([{ field: `headers.${header}`, message: `is the same header as ${other}` }]);
        seen.set(header.toLowerCase(), header);
      }
      const key = `${tenant}/${name}`;
      const current = await store.get<Receiver>("alert_receiver", key);
      checkRevision(`receiver ${name}`, q, current);
      const now = new Date().toISOString();
      // Header values go to the secret store first; the receiver keeps only their names and versions.
      const { headers, ...rest } = body;
      const refs = headers
        ? await sealReceiverHeaders(deps.secrets, tenant, name, headers, actorOf(req))
        : {};
      const value: Receiver = {
        ...rest,
        ...(headers ? { headers: refs } : {}),
        tenant,
        name,
        createdAt: current?.value.createdAt ?? now,
        updatedAt: now,
      };
      const saved = await store.put("alert_receiver", key, value, { expectRevision: current?.revision ?? 0 });
      await dropReceiverHeaders(
        deps.secrets,
        tenant,
        name,
        current?.value.headers,
        value.headers,
        actorOf(req),
      );
      reply.code(current ? 200 : 201);
      return { ...saved.value, revision: saved.revision };
    },
  );

  api.delete(
    "/alerts/receivers/:name",
    {
      schema: {
        summary: "Delete a receiver (its waiting deliveries too)",
        tags: ["alerts"],
        params: ReceiverParams,
        querystring: RevisionQuery,
      },
      ...typebox({ params: ReceiverParams, querystring: RevisionQuery }),
    },
    async (req) => {
      const q = req.query as Q;
      const { name } = req.params as { name: string };
      const key = `${tenantOf(req)}/${name}`;
      const current = await store.get<Receiver>("alert_receiver", key);
      if (!current) throw notFound(`no receiver ${name} (herd alerts receivers lists them)`);
      checkRevision(`receiver ${name}`, q, current);
      await store.delete("alert_receiver", key, { expectRevision: current.revision });
      await deps.secrets.removeScope(tenantOf(req), receiverScope(name));
      alerts.notifier.forget(key);
      return { deleted: { ...current.value, revision: current.revision } };
    },
  );

  api.get(
    "/alerts/silences",
    {
      schema: { summary: "Silences, active and expired", tags: ["alerts"], querystring: TenantQuery },
      ...typebox({ querystring: TenantQuery }),
    },
    async (req) => {
      const tenant = tenantOf(req);
      const now = Date.now();
      const items = (await store.list<Silence>("alert_silence", { prefix: `${tenant}/` })).items.map((o) => ({
        ...o.value,
        state: Date.parse(o.value.until) > now ? "active" : "expired",
      }));
      return { items };
    },
  );

  api.post(
    "/alerts/silences",
    {
      schema: {
        summary:
          "Silence the alerts all matchers match until a time: they still fire, but send no notification",
        tags: ["alerts"],
        querystring: TenantQuery,
        body: SilenceBodySchema,
      },
      ...typebox({ querystring: TenantQuery, body: SilenceBodySchema }),
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const body = req.body as SilenceBody;
      const problems: FieldProblem[] = [];
      const matchers: SilenceMatcher[] = [];
      body.matchers.forEach((text, i) => {
        const m = parseMatcher(text);
        if (typeof m === "string") problems.push({ field: `matchers.${i}`, message: m });
        else matchers.push(m);
      });
      const until = Date.parse(body.until);
      if (Number.isNaN(until))
        problems.push({ field: "until", message: "is not a time (RFC 3339, e.g. 2026-01-01T12:00:00Z)" });
      else if (until <= Date.now()) problems.push({ field: "until", message: "is in the past" });
      fieldProblems(problems);
      const now = new Date().toISOString();
      const silence: Silence = {
        tenant,
        id: newId(10),
        matchers,
        startsAt: now,
        until: new Date(until).toISOString(),
        comment: body.comment ?? "",
        createdAt: now,
      };
      await store.put("alert_silence", `${tenant}/${silence.id}`, silence, { expectRevision: 0 });
      reply.code(201);
      return { ...silence, state: "active" };
    },
  );

  api.delete(
    "/alerts/silences/:id",
    {
      schema: {
        summary: "End a silence now",
        tags: ["alerts"],
        params: SilenceParams,
        querystring: TenantQuery,
      },
      ...typebox({ params: SilenceParams, querystring: TenantQuery }),
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const key = `${tenantOf(req)}/${id}`;
      const current = await store.get<Silence>("alert_silence", key);
      if (!current) throw notFound(`no silence ${id} (herd alerts silences lists them)`);
      await store.delete("alert_silence", key);
      return { deleted: current.value };
    },
  );
}

/** 400 naming the first field at fault (and all of them in details). */
function fieldProblems(problems: FieldProblem[]): void {
  const first = problems[0];
  if (first) throw new HerdError("invalid", `${first.field}: ${first.message}`, problems);
}
