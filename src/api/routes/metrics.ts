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
import type { Instance, Node } from "../../model/objects.ts";
import { IngestBusyError, parseJsonWrite, parseTextWrite, WriteError } from "../../observe/ingest.ts";
import type { Metrics } from "../../observe/metrics.ts";
import { TARGET_KIND } from "../../observe/metrics.ts";
import {
  instantQuery,
  QueryError,
  type RangeSeries,
  rangeQuery,
  type Value,
} from "../../observe/promql/engine.ts";
import { type Expr, PromqlError, parseDuration, parsePromql } from "../../observe/promql/parser.ts";
import { type ScrapeTarget, targetLabels } from "../../observe/scrape.ts";
import type { Labels, Matcher } from "../../observe/tsdb/labels.ts";
import type { ApiDeps } from "../deps.ts";
import { Name } from "../schemas.ts";

const TargetBody = T.Object(
  {
    url: T.String({
      pattern: "^https?://",
      description: "the text endpoint, e.g. http://10.0.0.5:9100/metrics",
    }),
    labels: T.Optional(
      T.Record(T.String({ pattern: "^[a-zA-Z_][a-zA-Z0-9_]*$" }), T.String(), {
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

/** How Prometheus writes a float in JSON: a string, with NaN and ±Inf spelled its way. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function promResult(v: Value, t: number): unknown {
  const sec = t / 1000;
  switch (v.type) {
    case "scalar":
      return { resultType: "scalar", result: [sec, formatValue(v.value)] };
    case "string":
      return { resultType: "string", result: [sec, v.value] };
    case "vector":
      return {
        resultType: "vector",
        result: v.samples.map((s) => ({ metric: s.labels, value: [sec, formatValue(s.value)] })),
      };
    case "matrix":
      return {
        resultType: "matrix",
        result: v.series.map((s) => ({
          metric: s.labels,
          values: s.ts.map((ts, i) => [ts / 1000, formatValue(s.values[i] as number)]),
        })),
      };
  }
}

/** The matchers of each `match[]` selector. */
function matchSelectors(params: URLSearchParams): Matcher[][] {
  return params.getAll("match[]").map((m) => {
    const e: Expr = parsePromql(m);
    if (e.type !== "selector" || e.rangeMs !== undefined) {
      throw new PromBadData(`match[] must be a series selector such as up{job="api"}, got "${m}"`);
    }
    return e.matchers;
  });
}

/** Data already serialized (range answers are large: written by hand, without a tuple per point). */
class RawJson {
  readonly json: string;
  constructor(json: string) {
    this.json = json;
  }
}

/** `{"resultType":"matrix","result":[{"metric":{…},"values":[[sec,"v"],…]},…]}` */
export function matrixJson(series: RangeSeries[]): string {
  const parts: string[] = [];
  // Every series steps through the same times: write each `[sec,"` once.
  const prefixes = new Map<number, string>();
  for (const s of series) {
    let values = "";
    for (let i = 0; i < s.ts.length; i++) {
      const t = s.ts[i] as number;
      let prefix = prefixes.get(t);
      if (prefix === undefined) {
        prefix = `[${t / 1000},"`;
        prefixes.set(t, prefix);
      }
      const v = s.values[i] as number;
      values += `${i === 0 ? "" : ","}${prefix}${Number.isFinite(v) ? v : formatValue(v)}"]`;
    }
    parts.push(`{"metric":${JSON.stringify(s.labels)},"values":[${values}]}`);
  }
  return `{"resultType":"matrix","result":[${parts.join(",")}]}`;
}

async function promHandler(reply: FastifyReply, answer: () => unknown): Promise<unknown> {
  try {
    const data = answer();
    if (data instanceof RawJson) {
      return reply.type("application/json").send(`{"status":"success","data":${data.json}}`);
    }
    return { status: "success", data };
  } catch (err) {
    if (err instanceof PromBadData || err instanceof PromqlError || err instanceof QueryError) {
      // Prometheus clients read errorType/error; herd's own clients read code/message.
      return reply.code(400).send({
        status: "error",
        errorType: "bad_data",
        error: err.message,
        code: "invalid",
        message: err.message,
      });
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
  const { tsdb } = metrics;
  const both = (
    path: string,
    summary: string,
    handler: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
  ) => {
    api.get(`/prom/api/v1${path}`, { schema: { summary, tags: ["prometheus api"] } }, handler);
    api.post(`/prom/api/v1${path}`, { schema: { summary, tags: ["prometheus api"] } }, handler);
  };
  both("/query", "PromQL instant query", async (req, reply) =>
    promHandler(reply, () => {
      const p = promParams(req);
      const t = parseTime(p.get("time"), "time", Date.now());
      const query = p.get("query");
      if (!query) throw new PromBadData(`missing parameter "query"`);
      return promResult(instantQuery(tsdb, query, t), t);
    }),
  );
  both("/query_range", "PromQL range query", async (req, reply) =>
    promHandler(reply, () => {
      const p = promParams(req);
      const start = parseTime(p.get("start"), "start");
      const end = parseTime(p.get("end"), "end");
      const step = parseStep(p.get("step"));
      if (end < start)
        throw new PromBadData(`invalid parameter "end": end timestamp must not be before start time`);
      const query = p.get("query");
      if (!query) throw new PromBadData(`missing parameter "query"`);
      return new RawJson(matrixJson(rangeQuery(tsdb, query, start, end, step)));
    }),
  );
  both("/series", "Series matching selectors", async (req, reply) =>
    promHandler(reply, () => {
      const sets = matchSelectors(promParams(req));
      if (sets.length === 0) throw new PromBadData("no match[] parameter provided");
      const seen = new Map<number, Labels>();
      for (const m of sets) for (const s of tsdb.select(m)) seen.set(s.id, s.labels);
      return [...seen.values()];
    }),
  );
  both("/labels", "Label names", async (req, reply) =>
    promHandler(reply, () => {
      const sets = matchSelectors(promParams(req));
      if (sets.length === 0) return tsdb.labelNames();
      return [...new Set(sets.flatMap((m) => tsdb.labelNames(m)))].sort();
    }),
  );
  api.get(
    "/prom/api/v1/label/:name/values",
    { schema: { summary: "Values of a label", tags: ["prometheus api"] } },
    async (req, reply) =>
      promHandler(reply, () => {
        const { name } = req.params as { name: string };
        const sets = matchSelectors(promParams(req));
        if (sets.length === 0) return tsdb.labelValues(name);
        return [...new Set(sets.flatMap((m) => tsdb.labelValues(name, m)))].sort();
      }),
  );
  // Grafana asks for these; herd keeps no metadata or exemplars.
  both("/metadata", "Metric metadata (none kept)", async () => ({ status: "success", data: {} }));
  both("/query_exemplars", "Exemplars (none kept)", async () => ({ status: "success", data: [] }));
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

/** Target groups for Prometheus' http_sd_configs: every running instance, and herd's components and registered targets. */
export async function serviceDiscovery(
  store: ApiDeps["store"],
  targets: ScrapeTarget[],
): Promise<{ targets: string[]; labels: Record<string, string> }[]> {
  const nodes = new Map((await store.list<Node>("node")).items.map((o) => [o.value.name, o.value]));
  const groups: { targets: string[]; labels: Record<string, string> }[] = [];
  for (const { value: i } of (await store.list<Instance>("instance")).items) {
    const node = i.node ? nodes.get(i.node) : undefined;
    if (!node || !i.port || i.desired !== "running" || (i.state !== "running" && i.state !== "ready"))
      continue;
    groups.push({
      targets: [`${node.address}:${i.port}`],
      labels: { tenant: i.tenant, app: i.app, service: i.service, instance: i.id, node: node.name },
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
