/**
 * Zipkin v2 JSON (`POST /api/v2/spans`): an array of spans, read into Spans
 * with every field it uses checked.
 *
 *   [{traceId, id, parentId, name, kind, timestamp µs, duration µs,
 *     localEndpoint.serviceName, remoteEndpoint.serviceName, tags}] ─► Span[]
 *
 * A 64-bit trace id is left-padded to 128 bits; a remote endpoint's service
 * becomes `peer.service` (the dependency map reads it); an `error` tag or an
 * HTTP status ≥ 500 makes the span an error.
 */

import { type FieldProblem, invalid } from "../../common/errors.ts";
import { type AttributeValue, httpStatusOf, type Span, type SpanKind } from "./span.ts";

const MAX_PROBLEMS = 10;
const TRACE_ID = /^(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})$/;
const SPAN_ID = /^[0-9a-fA-F]{16}$/;
const KINDS: Record<string, SpanKind> = {
  CLIENT: "client",
  SERVER: "server",
  PRODUCER: "producer",
  CONSUMER: "consumer",
};

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const isMicros = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** Reads a Zipkin v2 span list; throws a 400 HerdError naming each bad field. */
export function parseZipkinSpans(body: unknown): Span[] {
  const problems: FieldProblem[] = [];
  const add = (field: string, message: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push({ field, message });
  };
  const spans: Span[] = [];
  if (!Array.isArray(body)) add("body", "must be a JSON array of Zipkin v2 spans");
  else {
    for (let i = 0; i < body.length && problems.length < MAX_PROBLEMS; i++) {
      const raw = body[i];
      const path = `[${i}]`;
      if (!isObject(raw)) {
        add(path, "must be an object");
        continue;
      }
      const before = problems.length;
      const traceId = raw.traceId;
      if (typeof traceId !== "string" || !TRACE_ID.test(traceId) || /^0+$/.test(traceId)) {
        add(`${path}.traceId`, "must be 16 or 32 hex characters, not all zero");
      }
      const id = raw.id;
      if (typeof id !== "string" || !SPAN_ID.test(id) || /^0+$/.test(id)) {
        add(`${path}.id`, "must be 16 hex characters, not all zero");
      }
      const parent = raw.parentId;
      if (parent !== undefined && parent !== null && (typeof parent !== "string" || !SPAN_ID.test(parent))) {
        add(`${path}.parentId`, "must be 16 hex characters");
      }
      if (raw.name !== undefined && typeof raw.name !== "string") add(`${path}.name`, "must be a string");
      let kind: SpanKind = "unspecified";
      if (raw.kind !== undefined && raw.kind !== null) {
        const k = typeof raw.kind === "string" ? KINDS[raw.kind] : undefined;
        if (!k) add(`${path}.kind`, "must be CLIENT, SERVER, PRODUCER or CONSUMER");
        else kind = k;
      }
      if (!isMicros(raw.timestamp)) add(`${path}.timestamp`, "must be microseconds since the epoch");
      if (raw.duration !== undefined && !isMicros(raw.duration)) {
        add(`${path}.duration`, "must be a whole number of microseconds");
      }
      const local = raw.localEndpoint;
      if (local !== undefined && local !== null && !isObject(local))
        add(`${path}.localEndpoint`, "must be an object");
      const remote = raw.remoteEndpoint;
      if (remote !== undefined && remote !== null && !isObject(remote))
        add(`${path}.remoteEndpoint`, "must be an object");
      const attributes: Record<string, AttributeValue> = {};
      if (raw.tags !== undefined && raw.tags !== null) {
        if (!isObject(raw.tags)) add(`${path}.tags`, "must be an object of strings");
        else
          for (const key in raw.tags) {
            const v = raw.tags[key];
            if (typeof v !== "string") add(`${path}.tags.${key}`, "must be a string");
            else attributes[key] = v;
          }
      }
      if (problems.length > before) continue;
      const localService = isObject(local) && typeof local.serviceName === "string" ? local.serviceName : "";
      const remoteService =
        isObject(remote) && typeof remote.serviceName === "string" ? remote.serviceName : "";
      if (remoteService && attributes["peer.service"] === undefined)
        attributes["peer.service"] = remoteService;
      const statusCode = httpStatusOf(attributes);
      const errorTag = attributes.error;
      const error = errorTag !== undefined || (statusCode !== null && statusCode >= 500);
      const tid = (traceId as string).toLowerCase();
      const span: Span = {
        traceId: tid.length === 16 ? `0000000000000000${tid}` : tid,
        spanId: (id as string).toLowerCase(),
        parentId: typeof parent === "string" ? parent.toLowerCase() : null,
        service: localService || "unknown",
        name: (raw.name as string | undefined) || "unknown",
        kind,
        start: raw.timestamp as number,
        duration: (raw.duration as number | undefined) ?? 0,
        status: error ? "error" : "ok",
        statusCode,
        attributes,
      };
      if (typeof errorTag === "string" && errorTag !== "") span.statusMessage = errorTag;
      spans.push(span);
    }
  }
  if (problems.length > 0) {
    const more =
      problems.length > 1
        ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? "s" : ""})`
        : "";
    throw invalid(`invalid Zipkin spans: ${problems[0].field}: ${problems[0].message}${more}`, problems);
  }
  return spans;
}
