/**
 * OTLP/HTTP JSON (`POST /v1/traces`): reading an ExportTraceServiceRequest
 * into Spans, checking every field it uses, and writing Spans back out (for
 * forwarding to another OTLP endpoint).
 *
 *   {resourceSpans:[{resource:{attributes}, scopeSpans:[{spans:[…]}]}]} ─► Span[]
 *
 * Ids are hex (the OTLP JSON mapping, not base64); times are nanoseconds as
 * strings or numbers; kind and status code are enum numbers or their names.
 */

import { isObject, keyValues as readKeyValues } from "../otlp/attributes.ts";
import { Problems } from "./problems.ts";
import { type AttributeValue, httpStatusOf, SPAN_KINDS, type Span, type SpanKind } from "./span.ts";

const HEX32 = /^[0-9a-fA-F]{32}$/;
const HEX16 = /^[0-9a-fA-F]{16}$/;
const ZERO32 = "00000000000000000000000000000000";
const ZERO16 = "0000000000000000";
const NANOS = /^\d{1,20}$/;

const KIND_NAMES: Record<string, SpanKind> = {
  SPAN_KIND_UNSPECIFIED: "unspecified",
  SPAN_KIND_INTERNAL: "internal",
  SPAN_KIND_SERVER: "server",
  SPAN_KIND_CLIENT: "client",
  SPAN_KIND_PRODUCER: "producer",
  SPAN_KIND_CONSUMER: "consumer",
};

type Json = Record<string, unknown>;

/** Reads an OTLP JSON export request; throws a 400 HerdError naming each bad field. */
export function parseOtlpTraces(body: unknown): Span[] {
  const problems = new Problems();
  const spans: Span[] = [];
  if (!isObject(body)) {
    problems.add("body", "must be a JSON object with resourceSpans");
    problems.check("OTLP traces");
  }
  const resourceSpans = (body as Json).resourceSpans;
  if (resourceSpans === undefined) return spans;
  if (!Array.isArray(resourceSpans)) {
    problems.add("resourceSpans", "must be an array");
    problems.check("OTLP traces");
  }
  const rs = resourceSpans as unknown[];
  for (let r = 0; r < rs.length && !problems.full; r++) {
    const rPath = `resourceSpans[${r}]`;
    const entry = rs[r];
    if (!isObject(entry)) {
      problems.add(rPath, "must be an object");
      continue;
    }
    const resource = readAttributes(
      (entry.resource as Json | undefined)?.attributes,
      `${rPath}.resource.attributes`,
      problems,
    );
    const service =
      typeof resource["service.name"] === "string" && resource["service.name"] !== ""
        ? resource["service.name"]
        : "unknown";
    const app = typeof resource["herd.app"] === "string" ? resource["herd.app"] : undefined;
    const tenant = typeof resource["herd.tenant"] === "string" ? resource["herd.tenant"] : undefined;
    // instrumentationLibrarySpans: the name before OTLP 0.15, still sent by old SDKs.
    const scopes = entry.scopeSpans ?? entry.instrumentationLibrarySpans;
    if (scopes === undefined) continue;
    if (!Array.isArray(scopes)) {
      problems.add(`${rPath}.scopeSpans`, "must be an array");
      continue;
    }
    for (let s = 0; s < scopes.length && !problems.full; s++) {
      const sPath = `${rPath}.scopeSpans[${s}]`;
      const scope = scopes[s];
      if (!isObject(scope)) {
        problems.add(sPath, "must be an object");
        continue;
      }
      const list = scope.spans;
      if (list === undefined) continue;
      if (!Array.isArray(list)) {
        problems.add(`${sPath}.spans`, "must be an array");
        continue;
      }
      for (let i = 0; i < list.length && !problems.full; i++) {
        const span = readSpan(list[i], `${sPath}.spans[${i}]`, problems, service, app, tenant);
        if (span) spans.push(span);
      }
    }
  }
  problems.check("OTLP traces");
  return spans;
}

function readSpan(
  raw: unknown,
  path: string,
  problems: Problems,
  service: string,
  app: string | undefined,
  tenant: string | undefined,
): Span | undefined {
  if (!isObject(raw)) {
    problems.add(path, "must be an object");
    return undefined;
  }
  const before = problems.list.length;
  const traceId = raw.traceId;
  if (typeof traceId !== "string" || !HEX32.test(traceId) || traceId === ZERO32) {
    problems.add(`${path}.traceId`, "must be 32 hex characters, not all zero");
  }
  const spanId = raw.spanId;
  if (typeof spanId !== "string" || !HEX16.test(spanId) || spanId === ZERO16) {
    problems.add(`${path}.spanId`, "must be 16 hex characters, not all zero");
  }
  let parentId: string | null = null;
  const parent = raw.parentSpanId;
  if (parent !== undefined && parent !== null && parent !== "") {
    if (typeof parent !== "string" || !HEX16.test(parent)) {
      problems.add(`${path}.parentSpanId`, "must be 16 hex characters or empty");
    } else if (parent !== ZERO16) parentId = parent.toLowerCase();
  }
  const name = raw.name;
  if (typeof name !== "string" || name === "") problems.add(`${path}.name`, "must be a non-empty string");
  const kind = readKind(raw.kind, `${path}.kind`, problems);
  const start = readNanosAsMicros(raw.startTimeUnixNano, `${path}.startTimeUnixNano`, problems);
  const end = readNanosAsMicros(raw.endTimeUnixNano, `${path}.endTimeUnixNano`, problems);
  if (start !== null && end !== null && end < start) {
    problems.add(`${path}.endTimeUnixNano`, "must not be before startTimeUnixNano");
  }
  const attributes = readAttributes(raw.attributes, `${path}.attributes`, problems);
  let error = false;
  let statusMessage: string | undefined;
  if (raw.status !== undefined && raw.status !== null) {
    if (!isObject(raw.status)) problems.add(`${path}.status`, "must be an object");
    else {
      const code = raw.status.code;
      if (code === 2 || code === "STATUS_CODE_ERROR") error = true;
      else if (
        !(
          code === undefined ||
          code === 0 ||
          code === 1 ||
          code === "STATUS_CODE_UNSET" ||
          code === "STATUS_CODE_OK"
        )
      ) {
        problems.add(`${path}.status.code`, "must be 0 (unset), 1 (ok) or 2 (error)");
      }
      if (typeof raw.status.message === "string" && raw.status.message !== "")
        statusMessage = raw.status.message;
    }
  }
  if (problems.list.length > before) return undefined;
  const statusCode = httpStatusOf(attributes);
  // A span that sets no status but answered 5xx failed; OTel's HTTP conventions say so too.
  if (statusCode !== null && statusCode >= 500) error = true;
  const span: Span = {
    traceId: (traceId as string).toLowerCase(),
    spanId: (spanId as string).toLowerCase(),
    parentId,
    service,
    name: name as string,
    kind,
    start: start as number,
    duration: (end as number) - (start as number),
    status: error ? "error" : "ok",
    statusCode,
    attributes,
  };
  if (statusMessage !== undefined) span.statusMessage = statusMessage;
  if (app !== undefined) span.app = app;
  if (tenant !== undefined) span.tenant = tenant;
  return span;
}

function readKind(raw: unknown, path: string, problems: Problems): SpanKind {
  if (raw === undefined || raw === null) return "unspecified";
  if (typeof raw === "number" && Number.isInteger(raw) && raw >= 0 && raw < SPAN_KINDS.length)
    return SPAN_KINDS[raw];
  if (typeof raw === "string" && KIND_NAMES[raw]) return KIND_NAMES[raw];
  problems.add(path, "must be 0 to 5 or a SPAN_KIND_* name");
  return "unspecified";
}

/** Nanoseconds (string or number) → µs. Strings are cut, not converted, so 19-digit values keep their precision. */
function readNanosAsMicros(raw: unknown, path: string, problems: Problems): number | null {
  if (typeof raw === "string" && NANOS.test(raw)) {
    return raw.length <= 3 ? 0 : Number(raw.slice(0, -3));
  }
  if (typeof raw === "number" && Number.isFinite(raw) && raw >= 0) return Math.floor(raw / 1000);
  problems.add(path, "must be nanoseconds since the epoch, as a string or number");
  return null;
}

/** OTLP KeyValue list → flat attributes; arrays and maps become JSON text. */
function readAttributes(raw: unknown, path: string, problems: Problems): Record<string, AttributeValue> {
  return readKeyValues(raw, path, problems, anyValue);
}

function anyValue(v: unknown): AttributeValue | undefined {
  if (!isObject(v)) return undefined;
  if (typeof v.stringValue === "string") return v.stringValue;
  if (typeof v.boolValue === "boolean") return v.boolValue;
  if (v.intValue !== undefined) {
    const n = Number(v.intValue);
    return Number.isFinite(n) ? n : String(v.intValue);
  }
  if (typeof v.doubleValue === "number") return v.doubleValue;
  if (typeof v.bytesValue === "string") return v.bytesValue;
  if (isObject(v.arrayValue)) {
    const values = Array.isArray(v.arrayValue.values) ? v.arrayValue.values : [];
    return JSON.stringify(values.map(anyValue));
  }
  if (isObject(v.kvlistValue)) {
    const obj: Record<string, AttributeValue | undefined> = {};
    for (const kv of Array.isArray(v.kvlistValue.values) ? v.kvlistValue.values : []) {
      if (isObject(kv) && typeof kv.key === "string") obj[kv.key] = anyValue(kv.value);
    }
    return JSON.stringify(obj);
  }
  return undefined;
}

/** Spans → an OTLP JSON export request, one resource per (service, app, tenant). */
export function toOtlpJson(spans: readonly Span[]): { resourceSpans: unknown[] } {
  const groups = new Map<string, { resource: Record<string, AttributeValue>; spans: unknown[] }>();
  for (const s of spans) {
    const key = `${s.service}\0${s.app ?? ""}\0${s.tenant ?? ""}`;
    let g = groups.get(key);
    if (!g) {
      const resource: Record<string, AttributeValue> = { "service.name": s.service };
      if (s.app) resource["herd.app"] = s.app;
      if (s.tenant) resource["herd.tenant"] = s.tenant;
      g = { resource, spans: [] };
      groups.set(key, g);
    }
    g.spans.push({
      traceId: s.traceId,
      spanId: s.spanId,
      parentSpanId: s.parentId ?? "",
      name: s.name,
      kind: SPAN_KINDS.indexOf(s.kind),
      startTimeUnixNano: `${s.start}000`,
      endTimeUnixNano: `${s.start + s.duration}000`,
      attributes: keyValues(s.attributes),
      status: s.status === "error" ? { code: 2, message: s.statusMessage ?? "" } : { code: 0 },
    });
  }
  return {
    resourceSpans: [...groups.values()].map((g) => ({
      resource: { attributes: keyValues(g.resource) },
      scopeSpans: [{ scope: { name: "herd" }, spans: g.spans }],
    })),
  };
}

function keyValues(attributes: Record<string, AttributeValue>): unknown[] {
  const out: unknown[] = [];
  for (const key in attributes) {
    const v = attributes[key];
    const value =
      typeof v === "string"
        ? { stringValue: v }
        : typeof v === "boolean"
          ? { boolValue: v }
          : Number.isInteger(v)
            ? { intValue: String(v) }
            : { doubleValue: v };
    out.push({ key, value });
  }
  return out;
}
