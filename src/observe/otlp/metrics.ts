/**
 * OTLP metrics (an ExportMetricsServiceRequest, JSON or decoded protobuf) →
 * points for the metrics store, named as Prometheus names them
 * (prom-names.ts), so an app's own metrics sit next to herd's:
 *
 *   gauge, non-monotonic sum ─► name{labels}
 *   monotonic cumulative sum ─► name_total{labels}
 *   histogram                ─► name_bucket{le} (cumulative, +Inf = count), name_sum, name_count
 *   summary                  ─► name{quantile}, name_sum, name_count
 *
 * Labels: the point's attributes, `job` (service.namespace/service.name),
 * `instance` (service.instance.id), and herd's resource attributes as herd's
 * labels (herd.app → app, herd.service → service, herd.instance → instance,
 * herd.tenant → tenant). Refused, and counted as rejected (the Prometheus
 * receiver refuses them too): delta temporality, exponential histograms.
 * Points flagged "no recorded value" are skipped.
 */

import { Problems } from "../traces/problems.ts";
import type { Labels } from "../tsdb/labels.ts";
import { NAME } from "../tsdb/labels.ts";
import type { WriteSeries } from "../tsdb/tsdb.ts";
import { anyValueText, attributeTexts, isObject, type Json, listAt, nanosToMs } from "./attributes.ts";
import { type NameKind, promLabelName, promMetricName } from "./prom-names.ts";

const CUMULATIVE = 2;
const NO_RECORDED_VALUE = 1;

const HERD_LABELS: Record<string, string> = {
  "herd.tenant": "tenant",
  "herd.app": "app",
  "herd.service": "service",
  "herd.instance": "instance",
};

export interface OtlpMetrics {
  series: WriteSeries[];
  /** Points not stored (delta temporality, exponential histograms). */
  rejected: number;
  /** Why, for the export response's partial success. */
  message: string;
}

/** Reads an OTLP metrics export request; throws a 400 HerdError naming each bad field. */
export function parseOtlpMetrics(body: unknown, now: number): OtlpMetrics {
  const problems = new Problems();
  const out: OtlpMetrics = { series: [], rejected: 0, message: "" };
  if (!isObject(body)) {
    problems.add("body", "must be an object with resourceMetrics");
    problems.check("OTLP metrics");
  }
  const reasons = new Set<string>();
  const series = new SeriesBuilder(out.series);
  const resources = listAt(body as Json, "resourceMetrics", "body", problems);
  for (let r = 0; r < resources.length && !problems.full; r++) {
    const rPath = `resourceMetrics[${r}]`;
    const rm = resources[r];
    if (!isObject(rm)) {
      problems.add(rPath, "must be an object");
      continue;
    }
    const resource = isObject(rm.resource)
      ? attributeTexts(rm.resource.attributes, `${rPath}.resource.attributes`, problems)
      : {};
    const base = resourceLabels(resource);
    const scopes = listAt(rm, "scopeMetrics", rPath, problems);
    for (let s = 0; s < scopes.length && !problems.full; s++) {
      const sPath = `${rPath}.scopeMetrics[${s}]`;
      const sm = scopes[s];
      if (!isObject(sm)) {
        problems.add(sPath, "must be an object");
        continue;
      }
      const metrics = listAt(sm, "metrics", sPath, problems);
      for (let m = 0; m < metrics.length && !problems.full; m++) {
        readMetric(metrics[m], `${sPath}.metrics[${m}]`, base, now, problems, out, reasons, series);
      }
    }
  }
  problems.check("OTLP metrics");
  out.message = [...reasons].join("; ");
  return out;
}

function resourceLabels(resource: Record<string, string>): Labels {
  const labels: Labels = {};
  const service = resource["service.name"];
  if (service) {
    const ns = resource["service.namespace"];
    labels.job = ns ? `${ns}/${service}` : service;
  }
  if (resource["service.instance.id"]) labels.instance = resource["service.instance.id"];
  for (const [key, label] of Object.entries(HERD_LABELS)) if (resource[key]) labels[label] = resource[key];
  return labels;
}

function readMetric(
  raw: unknown,
  path: string,
  base: Labels,
  now: number,
  problems: Problems,
  out: OtlpMetrics,
  reasons: Set<string>,
  series: SeriesBuilder,
): void {
  if (!isObject(raw)) {
    problems.add(path, "must be an object");
    return;
  }
  if (typeof raw.name !== "string" || raw.name === "") {
    problems.add(`${path}.name`, "must be a non-empty string");
    return;
  }
  const unit = typeof raw.unit === "string" ? raw.unit : "";
  const name = raw.name;
  const emit = (metric: string, point: Point, ts: number, value: number, le?: string, quantile?: string) =>
    series.add(metric, point, ts, value, le, quantile);
  const pointsOf = (data: Json, dPath: string) => {
    const points = listAt(data, "dataPoints", dPath, problems);
    const list: { labels: Point; ts: number; point: Json; at: string }[] = [];
    for (let i = 0; i < points.length; i++) {
      const at = `${dPath}.dataPoints[${i}]`;
      const point = points[i];
      if (!isObject(point)) {
        problems.add(at, "must be an object");
        continue;
      }
      if (typeof point.flags === "number" && (point.flags & NO_RECORDED_VALUE) !== 0) continue;
      let ts = now;
      if (point.timeUnixNano !== undefined) {
        const ms = nanosToMs(point.timeUnixNano);
        if (ms === undefined && point.timeUnixNano !== "0" && point.timeUnixNano !== 0) {
          problems.add(`${at}.timeUnixNano`, "must be nanoseconds since the epoch, as a string or number");
          continue;
        }
        ts = ms ?? now;
      }
      list.push({ labels: pointLabels(base, point.attributes, `${at}.attributes`, problems), ts, point, at });
    }
    return list;
  };
  const refuse = (data: Json, dPath: string, why: string) => {
    out.rejected += listAt(data, "dataPoints", dPath, problems).length;
    reasons.add(why);
  };
  const numberPoints = (data: Json, dPath: string, kind: NameKind) => {
    const metric = promMetricName(name, unit, kind);
    for (const { labels, ts, point, at } of pointsOf(data, dPath)) {
      const value = numberValue(point, at, problems);
      if (value !== undefined) emit(metric, labels, ts, value);
    }
  };

  if (isObject(raw.gauge)) numberPoints(raw.gauge, `${path}.gauge`, "gauge");
  else if (isObject(raw.sum)) {
    const sum = raw.sum;
    const monotonic = sum.isMonotonic === true;
    if (monotonic && temporality(sum) !== CUMULATIVE)
      refuse(sum, `${path}.sum`, `${name}: delta sums are not stored (use cumulative temporality)`);
    else numberPoints(sum, `${path}.sum`, monotonic ? "counter" : "gauge");
  } else if (isObject(raw.histogram)) {
    const h = raw.histogram;
    const hPath = `${path}.histogram`;
    if (temporality(h) !== CUMULATIVE) {
      refuse(h, hPath, `${name}: delta histograms are not stored (use cumulative temporality)`);
      return;
    }
    const metric = promMetricName(name, unit, "histogram");
    for (const { labels, ts, point, at } of pointsOf(h, hPath)) {
      const count = countValue(point.count ?? 0, `${at}.count`, problems);
      const bounds = Array.isArray(point.explicitBounds) ? point.explicitBounds : [];
      const counts = Array.isArray(point.bucketCounts) ? point.bucketCounts : [];
      if (counts.length !== 0 && counts.length !== bounds.length + 1) {
        problems.add(`${at}.bucketCounts`, "must have one more entry than explicitBounds");
        continue;
      }
      if (count === undefined) continue;
      let cumulative = 0;
      for (let b = 0; b < bounds.length; b++) {
        const bound = Number(bounds[b]);
        cumulative += countValue(counts[b] ?? 0, `${at}.bucketCounts[${b}]`, problems) ?? 0;
        emit(`${metric}_bucket`, labels, ts, cumulative, formatBound(bound));
      }
      emit(`${metric}_bucket`, labels, ts, count, "+Inf");
      if (point.sum !== undefined) emit(`${metric}_sum`, labels, ts, Number(point.sum));
      emit(`${metric}_count`, labels, ts, count);
    }
  } else if (isObject(raw.summary)) {
    const metric = promMetricName(name, unit, "summary");
    for (const { labels, ts, point, at } of pointsOf(raw.summary, `${path}.summary`)) {
      const count = countValue(point.count ?? 0, `${at}.count`, problems);
      if (count === undefined) continue;
      for (const q of Array.isArray(point.quantileValues) ? point.quantileValues : []) {
        if (!isObject(q)) continue;
        emit(metric, labels, ts, Number(q.value ?? 0), undefined, formatBound(Number(q.quantile ?? 0)));
      }
      emit(`${metric}_sum`, labels, ts, Number(point.sum ?? 0));
      emit(`${metric}_count`, labels, ts, count);
    }
  } else if (isObject(raw.exponentialHistogram)) {
    refuse(
      raw.exponentialHistogram,
      `${path}.exponentialHistogram`,
      `${name}: exponential histograms are not stored`,
    );
  } else {
    problems.add(path, "must have one of gauge, sum, histogram, summary, exponentialHistogram");
  }
}

/** A point's labels (the resource's and its attributes'), and a key naming them in their order. */
interface Point {
  labels: Labels;
  key: string;
}

const labelNames = new Map<string, string>();
/** promLabelName, remembered: the same few keys come in every point. */
function labelNameOf(key: string): string {
  let name = labelNames.get(key);
  if (name === undefined) {
    name = promLabelName(key);
    if (labelNames.size < 10_000) labelNames.set(key, name);
  }
  return name;
}

function pointLabels(base: Labels, raw: unknown, path: string, problems: Problems): Point {
  const labels: Labels = { ...base };
  let key = "";
  if (raw === undefined || raw === null) return { labels, key };
  if (!Array.isArray(raw)) {
    problems.add(path, "must be an array of {key, value}");
    return { labels, key };
  }
  for (let i = 0; i < raw.length; i++) {
    const kv = raw[i];
    if (!isObject(kv) || typeof kv.key !== "string") {
      problems.add(`${path}[${i}].key`, "must be a string");
      continue;
    }
    const v = kv.value;
    const value = isObject(v) && typeof v.stringValue === "string" ? v.stringValue : anyValueText(v);
    if (value === undefined) continue;
    labels[labelNameOf(kv.key)] = value;
    key += `${kv.key}\u0000${value}\u0000`;
  }
  return { labels, key };
}

/**
 * Points of one series (same metric, same attributes in the same order) go
 * into one WriteSeries, so the store looks each series up once per request.
 */
class SeriesBuilder {
  readonly #out: WriteSeries[];
  readonly #byKey = new Map<string, WriteSeries>();
  constructor(out: WriteSeries[]) {
    this.#out = out;
  }
  add(metric: string, point: Point, ts: number, value: number, le?: string, quantile?: string): void {
    const key = `${metric}\u0001${point.key}\u0001${le ?? ""}\u0001${quantile ?? ""}`;
    let series = this.#byKey.get(key);
    if (!series) {
      const labels: Labels = { ...point.labels, [NAME]: metric };
      if (le !== undefined) labels.le = le;
      if (quantile !== undefined) labels.quantile = quantile;
      series = { labels, samples: [] };
      this.#byKey.set(key, series);
      this.#out.push(series);
    }
    series.samples.push([ts, value]);
  }
}

/** AggregationTemporality as a number (its enum name in JSON also reads). */
function temporality(data: Json): number {
  const t = data.aggregationTemporality;
  if (t === "AGGREGATION_TEMPORALITY_CUMULATIVE") return CUMULATIVE;
  return typeof t === "number" ? t : 0;
}

function numberValue(point: Json, at: string, problems: Problems): number | undefined {
  if (typeof point.asDouble === "number") return point.asDouble;
  // The JSON mapping writes NaN and infinities as strings.
  if (point.asDouble === "NaN" || point.asDouble === "Infinity" || point.asDouble === "-Infinity")
    return Number(point.asDouble);
  if (point.asInt !== undefined) {
    const n = Number(point.asInt);
    if (Number.isFinite(n)) return n;
  }
  problems.add(at, "must have asDouble or asInt");
  return undefined;
}

function countValue(raw: unknown, at: string, problems: Problems): number | undefined {
  const n = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : raw;
  if (typeof n === "number" && Number.isFinite(n) && n >= 0) return n;
  problems.add(at, "must be a non-negative integer");
  return undefined;
}

/** A bucket bound or quantile as Prometheus prints it: `0.5`, `1`, `+Inf`. */
function formatBound(n: number): string {
  if (n === Number.POSITIVE_INFINITY) return "+Inf";
  if (n === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(n);
}
