/**
 * OpenTelemetry metric and attribute names → Prometheus names, as
 * Prometheus's own OTLP receiver and the Collector's Prometheus exporters
 * translate them (with suffixes):
 *
 *   http.server.request.duration, unit s, histogram ─► http_server_request_duration_seconds(_bucket|_sum|_count)
 *   process.cpu.time, unit s, monotonic sum          ─► process_cpu_time_seconds_total
 *   system.memory.utilization, unit 1, gauge         ─► system_memory_utilization_ratio
 *   app.queue.size, unit {items}, gauge              ─► app_queue_size
 *   net.io, unit By/s                                ─► net_io_bytes_per_second
 */

const UNITS: Record<string, string> = {
  d: "days",
  h: "hours",
  min: "minutes",
  s: "seconds",
  ms: "milliseconds",
  us: "microseconds",
  ns: "nanoseconds",
  By: "bytes",
  KiBy: "kibibytes",
  MiBy: "mebibytes",
  GiBy: "gibibytes",
  TiBy: "tibibytes",
  KBy: "kilobytes",
  MBy: "megabytes",
  GBy: "gigabytes",
  TBy: "terabytes",
  m: "meters",
  V: "volts",
  A: "amperes",
  J: "joules",
  W: "watts",
  g: "grams",
  Cel: "celsius",
  Hz: "hertz",
  "%": "percent",
};
const PER_UNITS: Record<string, string> = {
  s: "second",
  m: "minute",
  h: "hour",
  d: "day",
  w: "week",
  mo: "month",
  y: "year",
};

/** What kind of Prometheus metric a name is for: counters get `_total`, unit-1 gauges `_ratio`. */
export type NameKind = "counter" | "gauge" | "histogram" | "summary";

const words = (s: string): string[] => s.split(/[^a-zA-Z0-9]+/).filter((w) => w !== "");

/** The unit's words: `ms` → [milliseconds], `By/s` → [bytes, per, second], `{requests}` → []. */
function unitWords(unit: string): string[] {
  const plain = unit.replace(/\{[^}]*\}/g, "").trim();
  if (plain === "" || plain === "1") return [];
  const [main, per] = plain.split("/", 2).map((u) => u.trim());
  const out: string[] = [];
  if (main) out.push(...words(UNITS[main] ?? main));
  if (per) out.push("per", ...words(PER_UNITS[per] ?? per));
  return out;
}

/** The Prometheus metric name for an OTLP metric of this kind and unit. */
export function promMetricName(name: string, unit: string, kind: NameKind): string {
  let tokens = words(name);
  const suffix = unitWords(unit);
  // The unit is added unless the name already ends with it (`duration_seconds` stays).
  if (suffix.length > 0 && tokens.slice(-suffix.length).join("_") !== suffix.join("_")) {
    tokens.push(...suffix);
  }
  if (kind === "counter") {
    tokens = tokens.filter((t) => t !== "total");
    tokens.push("total");
  } else if (kind === "gauge" && unit.trim() === "1" && tokens.at(-1) !== "ratio") {
    tokens.push("ratio");
  }
  const out = tokens.join("_");
  if (out === "") return "_";
  return /^[0-9]/.test(out) ? `_${out}` : out;
}

/** An attribute key as a label name: other characters become `_`; a leading digit gets `key_`. */
export function promLabelName(key: string): string {
  const out = key.replace(/[^a-zA-Z0-9_]/g, "_");
  if (out === "") return "_";
  return /^[0-9]/.test(out) ? `key_${out}` : out;
}
