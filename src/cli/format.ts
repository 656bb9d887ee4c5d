/**
 * Output for people: aligned tables, relative ages, sizes, and one row shape
 * per object the API returns. Pure functions: objects and a time in, text out.
 */

import type { NodeCapacity } from "../api/capacity.ts";
import type { App, Event, Instance, Node, Release, Resources, Service } from "../model/objects.ts";
import { qosClass } from "../model/qos.ts";
import type { LogEntry } from "./types.ts";

/** An aligned table: headers in caps, columns three spaces apart, no trailing spaces. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : (c ?? "").padEnd(widths[i])))
      .join("   ")
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n");
}

/** "3s ago", "5m ago", "2h ago", "4d ago"; "-" when there is no time. */
export function formatAge(iso: string | undefined | null, now: number): string {
  if (!iso) return "-";
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "-";
  return `${formatSpan(now - then)} ago`;
}

/** A stretch of time in its largest unit: "3s", "5m", "2h", "4d" (rounded down unless told). */
function formatSpan(ms: number, round: (n: number) => number = Math.floor): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${round(s / 60)}m`;
  if (s < 48 * 3600) return `${round(s / 3600)}h`;
  return `${round(s / 86400)}d`;
}

/** A time still ahead: "in 5m", "in 30d"; "expired 3h ago" once past; "never" without one. */
export function formatExpiry(iso: string | undefined | null, now: number): string {
  if (!iso) return "never";
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "-";
  // Rounded to the nearest unit: a token made to last 30d says "in 30d" (floored, it would say 29d).
  return then <= now ? `expired ${formatSpan(now - then)} ago` : `in ${formatSpan(then - now, Math.round)}`;
}

/** An exact UTC time for records people compare (the audit trail): `2026-01-01 12:00:05`. */
export function formatTime(iso: string): string {
  return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(iso) ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}` : iso;
}

/** Bytes for people: "512 B", "1.5 KiB", "128 MiB", "7.6 GiB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 ? Math.round(value) : Number(value.toFixed(1))} ${units[unit]}`;
}

/** `herd apps`: one row per app with its services (from GET /apps/:app, when it answered). */
export function appsTable(apps: readonly { app: App; services?: readonly Service[] }[], now: number): string {
  const rows = apps.map(({ app, services }) => [
    app.name,
    app.release === null ? "-" : `v${app.release}`,
    services === undefined ? "?" : services.map((s) => `${s.name}=${s.instances}`).join(" ") || "-",
    appState(app, services),
    formatAge(app.createdAt, now),
  ]);
  return renderTable(["name", "release", "services", "state", "created"], rows);
}

function appState(app: App, services: readonly Service[] | undefined): string {
  if (app.destroying) return "destroying";
  if (services === undefined) return "?";
  if (services.length === 0) return "pending";
  const states = [...new Set(services.map((s) => s.state))];
  if (states.length === 1) return states[0];
  return services.map((s) => `${s.name}:${s.state}`).join(" ");
}

/** `herd ps`: instances, with a MESSAGE column only when one of them says something. */
export function instancesTable(instances: readonly Instance[], now: number): string {
  const sorted = [...instances].sort(
    (a, b) => a.service.localeCompare(b.service) || a.createdAt.localeCompare(b.createdAt),
  );
  const headers = ["id", "service", "release", "state", "node", "port", "cpu", "qos", "restarts", "age"];
  const messages = sorted.map(instanceMessage);
  const withMessage = messages.some((m) => m !== "");
  const rows = sorted.map((i, n) => {
    const row = [
      i.id,
      i.service,
      `v${i.release}`,
      i.desired === "stopped" && i.state !== "stopped" ? `${i.state} (stopping)` : i.state,
      i.node ?? "-",
      i.port === undefined ? "-" : String(i.port),
      cpuText(i.run?.resources),
      i.run?.resources ? qosClass(i.run.resources) : "-",
      String(i.restarts),
      formatAge(i.startedAt ?? i.createdAt, now),
    ];
    if (withMessage) row.push(messages[n] || "-");
    return row;
  });
  return renderTable(withMessage ? [...headers, "message"] : headers, rows);
}

/** An instance's CPU request, and its ceiling when it has one: "0.1", "0.25/0.5". */
function cpuText(r: Resources | undefined): string {
  if (!r) return "-";
  return r.cpuLimit === undefined ? formatCores(r.cpu) : `${formatCores(r.cpu)}/${formatCores(r.cpuLimit)}`;
}

function instanceMessage(i: Instance): string {
  if (i.reason && i.message) return `${i.reason}: ${i.message}`;
  return i.message || i.reason || "";
}

/** `herd scale` and service summaries: one row per service. */
export function servicesTable(services: readonly Service[]): string {
  const rows = services.map((s) => [s.name, String(s.instances), `v${s.release}`, s.state, s.message || "-"]);
  return renderTable(["service", "instances", "release", "state", "message"], rows);
}

/** `herd releases`: newest first, with a `*` on the one that serves now. */
export function releasesTable(releases: readonly Release[], current: number | null, now: number): string {
  const rows = releases.map((r) => [
    `v${r.version}`,
    formatAge(r.createdAt, now),
    r.description || "-",
    r.version === current ? "*" : "",
  ]);
  return renderTable(["version", "created", "description", "current"], rows);
}

/** What an event is about, from the most specific field it has. */
export function eventObject(e: Event): string {
  if (e.instance) return `instance/${[e.app, e.service, e.instance].filter(Boolean).join(".")}`;
  if (e.service) return `service/${[e.app, e.service].filter(Boolean).join(".")}`;
  if (e.deploy) return `deploy/${[e.app, e.deploy].filter(Boolean).join(".")}`;
  if (e.node) return `node/${e.node}`;
  if (e.app) return `app/${e.app}`;
  return "-";
}

/** `herd events`: oldest first as the API sends them; details (e.g. log tails) indented under their row. */
export function eventsTable(events: readonly Event[], now: number): string {
  const rows = events.map((e) => [formatAge(e.time, now), e.type, e.reason, eventObject(e), e.message]);
  const [header, ...lines] = renderTable(["time", "type", "reason", "object", "message"], rows).split("\n");
  const out = [header];
  lines.forEach((line, n) => {
    out.push(line);
    for (const d of events[n].details ?? []) out.push(`      | ${d}`);
  });
  return out.join("\n");
}

/**
 * `herd nodes`. With the capacity figures of GET /capacity (absent from older
 * servers): instances, and CPU and memory as used (measured) / free / allocatable.
 */
export function nodesTable(
  nodes: readonly Node[],
  now: number,
  figures?: ReadonlyMap<string, NodeCapacity>,
): string {
  if (!figures) {
    const rows = nodes.map((n) => [
      n.name,
      nodeState(n),
      n.address,
      n.allocatable.cpu === n.capacity.cpu
        ? String(n.capacity.cpu)
        : `${round2(n.allocatable.cpu)}/${n.capacity.cpu}`,
      n.allocatable.memory === n.capacity.memory
        ? formatBytes(n.capacity.memory)
        : `${formatBytes(n.allocatable.memory)}/${formatBytes(n.capacity.memory)}`,
      nodeIsolationText(n),
      driversText(n),
      formatAge(n.lastHeartbeat, now),
    ]);
    return renderTable(
      ["name", "state", "address", "cpu", "memory", "isolation", "drivers", "last heartbeat"],
      rows,
    );
  }
  const rows = nodes.map((n) => {
    const f = figures.get(n.name);
    return [
      n.name,
      nodeState(n),
      n.address,
      f ? String(f.instances) : "-",
      f
        ? `${formatCores(f.used.cpu)}/${formatCores(f.free.cpu)}/${formatCores(f.allocatable.cpu)}${f.cpuOvercommit && f.cpuOvercommit !== 1 ? ` ×${f.cpuOvercommit}` : ""}`
        : "-",
      f
        ? `${formatMemory(f.used.memory)}/${formatMemory(f.free.memory)}/${formatMemory(f.allocatable.memory)}`
        : "-",
      nodeIsolationText(n),
      driversText(n),
      formatAge(n.lastHeartbeat, now),
    ];
  });
  return renderTable(
    [
      "name",
      "state",
      "address",
      "instances",
      "cpu used/free/alloc",
      "memory used/free/alloc",
      "isolation",
      "drivers",
      "last heartbeat",
    ],
    rows,
  );
}

/** The runtime drivers a node's agent has: process always, then the others it reports (`process,docker`). */
export function driversText(n: Pick<Node, "drivers">): string {
  return ["process", ...(n.drivers ?? [])].join(",");
}

function nodeState(n: Node): string {
  return n.draining ? `${n.state},draining` : n.schedulable ? n.state : `${n.state},cordoned`;
}

/** CPU cores for people: "0.25", "1.9", "-" when not measured. */
export function formatCores(cores: number | undefined): string {
  return cores === undefined ? "-" : String(round2(cores));
}

/** Memory for people, "-" when not measured, a minus sign when overcommitted. */
export function formatMemory(bytes: number | undefined): string {
  if (bytes === undefined) return "-";
  return bytes < 0 ? `-${formatBytes(-bytes)}` : formatBytes(bytes);
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** The process driver's isolation, then each other driver's: `…; docker: cgroups v1, sandbox uid, …`. */
export function nodeIsolationText(n: Pick<Node, "isolation" | "driverIsolation">): string {
  return [
    isolationText(n.isolation),
    ...Object.entries(n.driverIsolation ?? {}).map(([name, i]) => `${name}: ${isolationText(i)}`),
  ].join(" · ");
}

/** `cgroups v1, sandbox uid, network nftables`; each layer not in force says why (docs/isolation.md). */
export function isolationText(i: Node["isolation"]): string {
  const parts = [
    i.cgroups === "none" ? `cgroups none${i.reason ? ` (${i.reason})` : ""}` : `cgroups ${i.cgroups}`,
  ];
  if (i.sandbox) parts.push(`sandbox ${i.sandbox}`);
  if (i.network) parts.push(`network ${i.network}`);
  const text = parts.join(", ");
  return i.missing?.length ? `${text}; missing: ${i.missing.join("; ")}` : text;
}

/**
 * One log entry for people: `TIME SERVICE.INSTANCE | line`, ` err` after the
 * instance for stderr, a JSON line as `LEVEL message key=value…`, the trace
 * id at the end (`herd trace ID` shows it), and events as
 * `TIME event SERVICE | Reason: message`. withApp prefixes `APP/` (the
 * tenant-wide stream).
 */
export function formatLogLine(entry: LogEntry, withApp = false): string {
  const trace = entry.traceId ? `  trace=${entry.traceId}` : "";
  const app = withApp && entry.app ? `${entry.app}/` : "";
  if (entry.stream === "event") {
    // An app's own event (no service): `event shop`, not `event shop/`.
    const where = entry.service ? `${app}${entry.service}` : withApp ? (entry.app ?? "") : "";
    const who = entry.app ? `event ${where}`.trimEnd() : `event node ${entry.node ?? "-"}`;
    return `${entry.time} ${who} | ${entry.level === "warn" ? "WARN " : ""}${entry.reason}: ${entry.line}`;
  }
  const who = `${app}${entry.service}.${entry.instance}${entry.stream === "stderr" ? " err" : ""}`;
  return `${entry.time} ${who} | ${entry.fields && entry.msg !== undefined ? jsonLine(entry) : entry.line}${trace}`;
}

/** Keys a JSON line's message, level, time and trace id come from: not repeated as fields. */
const SHOWN_KEYS = new Set([
  "msg",
  "message",
  "@message",
  "level",
  "severity",
  "lvl",
  "time",
  "timestamp",
  "ts",
  "@timestamp",
  "trace_id",
  "traceId",
  "traceID",
]);

/** A field that only carries the trace id shown at the end (`trace.id`, `{"trace":{"id"}}`, a traceparent). */
function holdsTraceId(value: unknown, traceId: string | undefined): boolean {
  if (!traceId) return false;
  if (typeof value === "string") return value.toLowerCase().includes(traceId);
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value);
    return entries.length === 1 && entries[0]?.[0] === "id" && holdsTraceId(entries[0][1], traceId);
  }
  return false;
}

/** A JSON line for people: `LEVEL message key=value …`, on one line (newlines in the message as \n). */
function jsonLine(entry: LogEntry): string {
  const msg = typeof entry.msg === "string" ? entry.msg.replace(/\r?\n/g, "\\n") : entry.msg;
  const rest = Object.entries(entry.fields ?? {})
    .filter(([k, v]) => !SHOWN_KEYS.has(k) && !holdsTraceId(v, entry.traceId))
    .map(
      ([k, v]) =>
        `${k}=${typeof v === "string" ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`,
    );
  return [entry.level?.toUpperCase(), msg, ...rest].filter(Boolean).join(" ");
}
