/**
 * Metrics routes: pushed points, scrape targets, storage stats, and the
 * Prometheus-compatible query API and HTTP service discovery under /prom.
 *
 *   POST /metrics/write                     JSON {series:[…]} or Prometheus text ─► 200 | 400 | 413 | 429
 *   GET|PUT|DELETE /metrics/targets[/:name] what the control plane scrapes
 *   GET  /metrics/stats                     storage size, series, retention edge
 *   GET|POST /prom/api/v1/query|query_range|series|labels|label/:name/values   (Prometheus HTTP API)
 *   GET  /prom/sd                           Prometheus http_sd_configs target groups
 *
 * A Grafana or Prometheus data source points at `<herd>/api/v1/prom` and
 * sends the token as `Authorization: Bearer …` (or as the password of HTTP
 * basic auth, for clients that only do that, like promtool).
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { HerdError, invalid } from "../../common/errors.ts";
import { type Instance, type Node, type Release, releaseKey } from "../../model/objects.ts";
import { IngestBusyError, parseJsonWrite, parseTextWrite, WriteError } from "../../observe/ingest.ts";
import type { Metrics } from "../../observe/metrics.ts";
import { TARGET_KIND } from "../../observe/metrics.ts";
import { QueryError, TooManySamplesError, typeOf } from "../../observe/promql/engine.ts";
import type { PromqlJob } from "../../observe/promql/jobs.ts";
import { type Expr, PromqlError, parseDuration, parsePromql } from "../../observe/promql/parser.ts";
import { scopeToTenant, TENANT_LABEL, tenantMatchers } from "../../observe/promql/tenancy.ts";
import { QueryBusyError, QueryTimeoutError } from "../../observe/query-pool.ts";
import { type ScrapeTarget, targetLabels } from "../../observe/scrape.ts";
import type { Labels, Matcher } from "../../observe/tsdb/labels.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, telemetryTenant } from "../schemas.ts";

const TargetBody = T.Object(
  {
    url: T.String({
      pattern: "^https?://",
      description: "the text endpoint, e.g. http://10.0.0.5:9100/metrics",
    }),
    labels: T.Optional(
      T.Record(T.String({ pattern: "^[a-zA-Z_][a-zA-Z0-9_]*$" }), T.String(), {
        additionalProperties: false,
        description: "added to every series scraped from it",
      }),
    ),
    intervalSeconds: T.Optional(T.Number({ minimum: 1, maximum: 3600 })),
  },
  { additionalProperties: false },
);

/** A Prometheus API answer for bad input: 400 with errorType bad_data. */
class PromBadData extends Error {}

/** Parameters from the query string and, for POST, a form body (Grafana posts forms). */
function promParams(req: FastifyRequest): URLSearchParams {
  const params = new URLSearchParams(req.url.split("?")[1] ?? "");
  if (typeof req.body === "string") for (const [k, v] of new URLSearchParams(req.body)) params.append(k, v);
  return params;
}

/** RFC 3339 or Unix seconds (fractions allowed) → ms. */
function parseTime(value: string | null, name: string, fallback?: number): number {
  if (value === null || value === "") {
    if (fallback !== undefined) return fallback;
    throw new PromBadData(`missing parameter "${name}"`);
  }
  if (/^-?\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw new PromBadData(`invalid parameter "${name}": cannot parse "${value}" to a valid timestamp`);
  return ms;
}

/** A step: seconds (fractions allowed) or a duration like 15s. */
function parseStep(value: string | null): number {
  if (!value) throw new PromBadData(`missing parameter "step"`);
  const ms = /^\d+(\.\d+)?$/.test(value) ? Math.round(Number(value) * 1000) : parseDuration(value);
  if (ms === undefined || ms <= 0) {
    throw new PromBadData(`invalid parameter "step": cannot parse "${value}" to a valid duration`);
  }
  return ms;
}

/**
 * The matchers of each `match[]` selector, limited to `tenant`'s series when
 * there is one (then no `match[]` means all of the tenant's series).
 */
function matchSelectors(params: URLSearchParams, tenant: string | undefined): Matcher[][] {
  const sets = params.getAll("match[]").map((m) => {
    const e: Expr = parsePromql(m);
    if (e.type !== "selector" || e.rangeMs !== undefined) {
      throw new PromBadData(`match[] must be a series selector such as up{job="api"}, got "${m}"`);
    }
    return tenant === undefined ? e.matchers : tenantMatchers(e.matchers, tenant);
  });
  if (sets.length === 0 && tenant !== undefined) sets.push(tenantMatchers([], tenant));
  return sets;
}

/** `?timeout=`: seconds or a duration like 10s (the server's limit caps it). */
function parseTimeout(value: string | null): number | undefined {
  if (value === null || value === "") return undefined;
  const ms = /^\d+(\.\d+)?$/.test(value) ? Math.round(Number(value) * 1000) : parseDuration(value);
  if (ms === undefined || ms <= 0) {
    throw new PromBadData(`invalid parameter "timeout": cannot parse "${value}" to a valid duration`);
  }
  return ms;
}

/** `start` and `end` of /series, /labels and /label/:name/values: undefined when neither is given (all time). */
function timeRange(params: URLSearchParams): { start: number; end: number } | undefined {
  if (!params.get("start") && !params.get("end")) return undefined;
  const start = parseTime(params.get("start"), "start", -8.64e15);
  const end = parseTime(params.get("end"), "end", 8.64e15);
  if (end < start)
    throw new PromBadData(`invalid parameter "end": end timestamp must not be before start time`);
  return { start, end };
}

/** A non-negative whole number parameter (`limit`), or undefined. */
function optionalCount(value: string | null, name: string): number | undefined {
  if (value === null || value === "") return undefined;
  if (!/^\d+$/.test(value)) throw new PromBadData(`invalid parameter "${name}": "${value}" is not a count`);
  const n = Number(value);
  return n === 0 ? undefined : n;
}

/** The label sets of the series matching any of `sets` (all series when there are none), with samples in `range`. */
function seriesIn(
  tsdb: Metrics["tsdb"],
  sets: Matcher[][],
  range: { start: number; end: number } | undefined,
): Labels[] {
  const seen = new Map<number, Labels>();
  const all: Matcher[][] = sets.length > 0 ? sets : [[{ name: "__name__", op: "=~", value: ".+" }]];
  for (const m of all) {
    for (const s of tsdb.select(m)) {
      if (seen.has(s.id) || (range && !tsdb.hasSamples(s.id, range.start, range.end))) continue;
      seen.set(s.id, s.labels);
    }
  }
  return [...seen.values()];
}

/** The parsed query, with every selector limited to `tenant`'s series when there is one. */
function scopedQuery(params: URLSearchParams, tenant: string | undefined): Expr {
  const query = params.get("query");
  if (!query) throw new PromBadData(`missing parameter "query"`);
  const expr = parsePromql(query);
  return tenant === undefined ? expr : scopeToTenant(expr, tenant);
}

/** Data already serialized by a query worker: the `data` member's JSON. */
class RawJson {
  readonly json: string;
  constructor(json: string) {
    this.json = json;
  }
}

/** A Prometheus API error: errorType/error for Prometheus clients, code/message for herd's. */
function promError(reply: FastifyReply, status: number, errorType: string, code: string, message: string) {
  return reply.code(status).send({ status: "error", errorType, error: message, code, message });
}

async function promHandler(reply: FastifyReply, answer: () => unknown): Promise<unknown> {
  try {
    const data = await answer();
    if (data instanceof RawJson) {
      return reply.type("application/json").send(`{"status":"success","data":${data.json}}`);
    }
    return { status: "success", data };
  } catch (err) {
    const message = (err as Error).message;
    // Statuses as Prometheus answers them: 422 for a query it could not execute, 503 for a timeout.
    if (err instanceof TooManySamplesError) return promError(reply, 422, "execution", "invalid", message);
    if (err instanceof QueryTimeoutError) return promError(reply, 503, "timeout", "unavailable", message);
    if (err instanceof QueryBusyError) {
      reply.header("retry-after", "1");
      return promError(
        reply,
        err.status,
        "unavailable",
        err.status === 429 ? "too_many" : "unavailable",
        message,
      );
    }
    if (err instanceof PromBadData || err instanceof PromqlError || err instanceof QueryError) {
      return promError(reply, 400, "bad_data", "invalid", message);
    }
    throw err;
  }
}

export function metricsRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { metrics, store } = deps;
  api.register(async (scope) => {
    // Prometheus clients POST forms; pushed text comes as text/plain (handled by Fastify).
    scope.addContentTypeParser(
      "application/x-www-form-urlencoded",
      { parseAs: "string" },
      (_req, body, done) => done(null, body),
    );
    writeRoutes(scope, metrics);
    targetRoutes(scope, deps);
    promRoutes(scope, metrics);
    scope.get(
      "/prom/sd",
      { schema: { summary: "Prometheus HTTP service discovery", tags: ["metrics"] } },
      async () => serviceDiscovery(store, await metrics.targets()),
    );
  });
}

/**
 * Points pushed with a tenant's credential (or by a platform admin naming a
 * tenant) are that tenant's: the `tenant` label is set on every series,
 * whatever the body said. A platform admin naming none writes as given.
 */
function writeRoutes(api: FastifyInstance, metrics: Metrics): void {
  api.post(
    "/metrics/write",
    {
      bodyLimit: 16 * 1024 * 1024,
      schema: {
        summary:
          "Push metric points: JSON {series:[{metric, labels, samples:[[ms, value]]}]} or Prometheus text",
        tags: ["metrics"],
      },
    },
    async (req, reply) => {
      let batch: ReturnType<typeof parseJsonWrite>;
      try {
        batch =
          typeof req.body === "string" ? parseTextWrite(req.body, Date.now()) : parseJsonWrite(req.body);
      } catch (err) {
        if (err instanceof WriteError) {
          throw invalid(`invalid metrics write: ${err.message}`, [
            { field: err.field, message: err.problem },
          ]);
        }
        throw err;
      }
      const tenant = telemetryTenant(req);
      if (tenant !== undefined) {
        batch = batch.map((series) => ({ ...series, labels: { ...series.labels, [TENANT_LABEL]: tenant } }));
      }
      try {
        const result = await metrics.queue.submit(batch);
        return result;
      } catch (err) {
        if (err instanceof IngestBusyError) {
          // Retrying the same write would never help: 413, no Retry-After.
          if (err.tooLarge) return reply.code(413).send({ code: "too_large", message: err.message });
          return reply
            .code(429)
            .header("retry-after", String(err.retryAfterSeconds))
            .send({ code: "too_many_requests", message: err.message });
        }
        throw err;
      }
    },
  );
  api.get(
    "/metrics/stats",
    { schema: { summary: "Metrics storage: size, series, retention", tags: ["metrics"] } },
    async () => ({
      ...metrics.tsdb.stats(),
      rawRetentionMs: metrics.tsdb.rawRetentionMs,
      downsampledRetentionMs: metrics.tsdb.downsampledRetentionMs,
      ingestQueue: { pending: metrics.queue.pending, capacity: metrics.queue.capacity },
      queries: {
        ...metrics.queries.load,
        ...metrics.queries.counts,
        concurrency: metrics.queries.concurrency,
        timeoutMs: metrics.queries.timeoutMs,
        maxSamples: metrics.queries.maxSamples,
      },
    }),
  );
}

function targetRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { metrics, store } = deps;
  api.get(
    "/metrics/targets",
    { schema: { summary: "Scrape targets and their last scrape", tags: ["metrics"] } },
    async () => ({
      items: metrics.scraper.health(await metrics.targets()),
    }),
  );
  api.put(
    "/metrics/targets/:name",
    {
      schema: {
        summary: "Register (or replace) a scrape target",
        tags: ["metrics"],
        params: T.Object({ name: Name }),
        body: TargetBody,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      if (name === "herd-api") throw invalid("name: herd-api is herd's own target");
      const body = req.body as { url: string; labels?: Record<string, string>; intervalSeconds?: number };
      const target: ScrapeTarget = {
        name,
        url: body.url,
        labels: body.labels ?? {},
        ...(body.intervalSeconds ? { intervalSeconds: body.intervalSeconds } : {}),
        createdAt: new Date().toISOString(),
      };
      try {
        new URL(target.url);
      } catch {
        throw invalid(`url: "${target.url}" is not a URL`, [{ field: "body.url", message: "is not a URL" }]);
      }
      await store.put(TARGET_KIND, name, target);
      return target;
    },
  );
  api.delete(
    "/metrics/targets/:name",
    { schema: { summary: "Stop scraping a target", tags: ["metrics"], params: T.Object({ name: Name }) } },
    async (req) => {
      const { name } = req.params as { name: string };
      if (!(await store.delete(TARGET_KIND, name)))
        throw new HerdError("not_found", `no scrape target ${name}`);
      return { deleted: name };
    },
  );
}

function promRoutes(api: FastifyInstance, metrics: Metrics): void {
  const { tsdb, queries } = metrics;
  const both = (
    path: string,
    summary: string,
    handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
  ) => {
    api.get(`/prom/api/v1${path}`, { schema: { summary, tags: ["prometheus api"] } }, handler);
    api.post(`/prom/api/v1${path}`, { schema: { summary, tags: ["prometheus api"] } }, handler);
  };
  /** Runs a query in the pool, as the tenant's (a platform admin's without one share a line). */
  const run = async (p: URLSearchParams, job: PromqlJob, tenant: string | undefined) =>
    new RawJson(await queries.run(job, tenant ?? "", parseTimeout(p.get("timeout"))));
  both(
    "/query",
    "PromQL instant query (a tenant's series only, unless a platform admin names none)",
    async (req, reply) =>
      promHandler(reply, () => {
        const p = promParams(req);
        const tenant = telemetryTenant(req);
        const time = parseTime(p.get("time"), "time", Date.now());
        const expr = scopedQuery(p, tenant);
        return run(p, { kind: "instant", expr, time, maxSamples: queries.maxSamples }, tenant);
      }),
  );
  both(
    "/query_range",
    "PromQL range query (a tenant's series only, unless a platform admin names none)",
    async (req, reply) =>
      promHandler(reply, () => {
        const p = promParams(req);
        const tenant = telemetryTenant(req);
        const start = parseTime(p.get("start"), "start");
        const end = parseTime(p.get("end"), "end");
        const step = parseStep(p.get("step"));
        if (end < start)
          throw new PromBadData(`invalid parameter "end": end timestamp must not be before start time`);
        const expr = scopedQuery(p, tenant);
        // Checked here too (the worker checks again), so a bad query costs no worker.
        if ((end - start) / step > 11_000) {
          throw new PromBadData(
            "exceeded maximum resolution of 11,000 points per series: use a larger step or a shorter range",
          );
        }
        const t0 = typeOf(expr);
        if (t0 !== "vector" && t0 !== "scalar") {
          throw new PromBadData(`a range query needs an instant vector or scalar expression, got ${t0}`);
        }
        return run(p, { kind: "range", expr, start, end, step, maxSamples: queries.maxSamples }, tenant);
      }),
  );
  both(
    "/series",
    "Series matching selectors (with samples between start and end when given)",
    async (req, reply) =>
      promHandler(reply, () => {
        const p = promParams(req);
        if (p.getAll("match[]").length === 0) throw new PromBadData("no match[] parameter provided");
        return seriesIn(tsdb, matchSelectors(p, telemetryTenant(req)), timeRange(p));
      }),
  );
  both("/labels", "Label names (of the series matching match[], between start and end)", async (req, reply) =>
    promHandler(reply, () => {
      const p = promParams(req);
      const sets = matchSelectors(p, telemetryTenant(req));
      const range = timeRange(p);
      if (sets.length === 0 && !range) return tsdb.labelNames();
      const names = new Set<string>();
      for (const labels of seriesIn(tsdb, sets, range)) for (const k of Object.keys(labels)) names.add(k);
      return [...names].sort();
    }),
  );
  const labelValues = async (req: FastifyRequest, reply: FastifyReply) =>
    promHandler(reply, () => {
      const { name } = req.params as { name: string };
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new PromBadData(`invalid label name: "${name}"`);
      const p = promParams(req);
      const sets = matchSelectors(p, telemetryTenant(req));
      const range = timeRange(p);
      if (sets.length === 0 && !range) return tsdb.labelValues(name);
      const values = new Set<string>();
      for (const labels of seriesIn(tsdb, sets, range)) {
        const v = labels[name];
        if (v !== undefined && v !== "") values.add(v);
      }
      return [...values].sort();
    });
  api.get(
    "/prom/api/v1/label/:name/values",
    {
      schema: {
        summary: "Values of a label (of the series matching match[], between start and end)",
        tags: ["prometheus api"],
      },
    },
    labelValues,
  );
  both("/metadata", "Metric metadata (# TYPE and # HELP) of the scraped targets", async (req, reply) =>
    promHandler(reply, () => {
      const p = promParams(req);
      const limit = optionalCount(p.get("limit"), "limit");
      const perMetric = optionalCount(p.get("limit_per_metric"), "limit_per_metric");
      const metric = p.get("metric");
      // A tenant sees the families of its own series only (a histogram's family has _bucket, _sum, _count).
      const tenant = telemetryTenant(req);
      const own = tenant === undefined ? undefined : tsdb.labelValues("__name__", tenantMatchers([], tenant));
      const visible = (name: string) =>
        !own ||
        own.some((n) => n === name || (n.startsWith(`${name}_`) && !n.slice(name.length + 1).includes("_")));
      const out: Record<string, { type: string; help: string; unit: string }[]> = {};
      for (const [name, entries] of metrics.scraper.metadata()) {
        if ((metric && name !== metric) || !visible(name)) continue;
        if (limit !== undefined && Object.keys(out).length >= limit) break;
        out[name] = perMetric !== undefined ? entries.slice(0, perMetric) : entries;
      }
      return out;
    }),
  );
  // herd keeps no exemplars: the query is checked as Prometheus checks it, the answer is empty.
  both("/query_exemplars", "Exemplars (herd keeps none: an empty list)", async (req, reply) =>
    promHandler(reply, () => {
      const p = promParams(req);
      scopedQuery(p, telemetryTenant(req));
      timeRange(p);
      return [];
    }),
  );
  api.get(
    "/prom/api/v1/status/buildinfo",
    { schema: { summary: "Build information", tags: ["prometheus api"] } },
    async () => ({
      status: "success",
      // Grafana reads the version to decide which API features to use: herd answers the 2.x query API.
      data: {
        version: "2.42.0",
        revision: "herd",
        branch: "herd",
        buildUser: "herd",
        buildDate: "",
        goVersion: "",
      },
    }),
  );
}

/**
 * Target groups for Prometheus' http_sd_configs: every running instance of a
 * service that declares a metrics endpoint (herd.yaml `metrics: { path }`, in
 * the instance's release; others serve no metrics and would show as targets
 * that are down), and herd's components and registered targets.
 */
export async function serviceDiscovery(
  store: ApiDeps["store"],
  targets: ScrapeTarget[],
): Promise<{ targets: string[]; labels: Record<string, string> }[]> {
  const nodes = new Map((await store.list<Node>("node")).items.map((o) => [o.value.name, o.value]));
  const groups: { targets: string[]; labels: Record<string, string> }[] = [];
  // Each release read once, however many instances run it.
  const releases = new Map<string, Promise<Release | undefined>>();
  const releaseOf = (i: Instance) => {
    const key = releaseKey(i.tenant, i.app, i.release);
    let r = releases.get(key);
    if (!r) {
      r = store.get<Release>("release", key).then((o) => o?.value);
      releases.set(key, r);
    }
    return r;
  };
  for (const { value: i } of (await store.list<Instance>("instance")).items) {
    const node = i.node ? nodes.get(i.node) : undefined;
    if (!node || !i.port || i.desired !== "running" || (i.state !== "running" && i.state !== "ready"))
      continue;
    const path = (await releaseOf(i))?.services[i.service]?.metrics?.path;
    if (path === undefined) continue;
    groups.push({
      targets: [`${node.address}:${i.port}`],
      labels: {
        tenant: i.tenant,
        app: i.app,
        service: i.service,
        instance: i.id,
        node: node.name,
        __metrics_path__: path,
      },
    });
  }
  for (const t of targets) {
    const u = new URL(t.url);
    const { job: _job, instance, ...labels } = targetLabels(t);
    groups.push({
      targets: [instance as string],
      labels: {
        ...labels,
        component: labels.component ?? t.name,
        __metrics_path__: u.pathname,
        __scheme__: u.protocol.slice(0, -1),
      },
    });
  }
  return groups;
}
