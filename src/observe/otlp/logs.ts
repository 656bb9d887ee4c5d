/**
 * OTLP logs (an ExportLogsServiceRequest, JSON or decoded protobuf) → log
 * store entries, beside the lines the agents ship from stdout and stderr.
 *
 *   record ─► app/service/instance from the resource's herd.* attributes (the agent sets them)
 *          ─► line: the body as text, or, when the record has attributes or a trace,
 *             one JSON object {msg, trace_id, span_id, …attributes} that log-parse.ts reads back
 *          ─► level from severityNumber (OTel's 1–24 onto pino's scale), else severityText
 */

import type { LogLevel } from "../log-parse.ts";
import { levelOf } from "../log-parse.ts";
import type { LogInput } from "../log-store.ts";
import { Problems } from "../traces/problems.ts";
import {
  anyValueJson,
  anyValueText,
  attributeTexts,
  isObject,
  type Json,
  listAt,
  nanosToMs,
} from "./attributes.ts";

const SEVERITY: LogLevel[] = ["trace", "debug", "info", "warn", "error", "fatal"];

/** Reads an OTLP logs export request; throws a 400 HerdError naming each bad field. */
export function parseOtlpLogs(body: unknown, now: number): LogInput[] {
  const problems = new Problems();
  const out: LogInput[] = [];
  if (!isObject(body)) {
    problems.add("body", "must be an object with resourceLogs");
    problems.check("OTLP logs");
  }
  const resources = listAt(body as Json, "resourceLogs", "body", problems);
  for (let r = 0; r < resources.length && !problems.full; r++) {
    const rPath = `resourceLogs[${r}]`;
    const rl = resources[r];
    if (!isObject(rl)) {
      problems.add(rPath, "must be an object");
      continue;
    }
    const res = isObject(rl.resource)
      ? attributeTexts(rl.resource.attributes, `${rPath}.resource.attributes`, problems)
      : {};
    // Without herd's attributes (a sender outside herd): service.name as `app/service` or the service.
    const named = res["service.name"] ?? "";
    const slash = named.indexOf("/");
    const owner = {
      tenant: res["herd.tenant"] ?? "",
      app: res["herd.app"] ?? (slash > 0 ? named.slice(0, slash) : ""),
      service: res["herd.service"] ?? (slash > 0 ? named.slice(slash + 1) : named),
      instance: res["herd.instance"] ?? res["service.instance.id"] ?? "",
    };
    const scopes = listAt(rl, "scopeLogs", rPath, problems);
    for (let s = 0; s < scopes.length && !problems.full; s++) {
      const sPath = `${rPath}.scopeLogs[${s}]`;
      const sl = scopes[s];
      if (!isObject(sl)) {
        problems.add(sPath, "must be an object");
        continue;
      }
      const records = listAt(sl, "logRecords", sPath, problems);
      for (let i = 0; i < records.length && !problems.full; i++) {
        const at = `${sPath}.logRecords[${i}]`;
        const record = records[i];
        if (!isObject(record)) {
          problems.add(at, "must be an object");
          continue;
        }
        const attributes = attributeTexts(record.attributes, `${at}.attributes`, problems);
        const level = severity(record);
        const ms = nanosToMs(record.timeUnixNano) ?? nanosToMs(record.observedTimeUnixNano) ?? now;
        out.push({
          ...owner,
          time: new Date(ms).toISOString(),
          stream: level !== undefined && level >= 4 ? "stderr" : "stdout",
          line: lineOf(record, attributes),
          ...(level !== undefined ? { level: SEVERITY[level] } : {}),
        });
      }
    }
  }
  problems.check("OTLP logs");
  return out;
}

/** Index into SEVERITY from severityNumber (1–24, four per level), else from severityText. */
function severity(record: Json): number | undefined {
  const n = Number(record.severityNumber ?? 0);
  if (Number.isInteger(n) && n >= 1 && n <= 24) return Math.floor((n - 1) / 4);
  const word = levelOf(record.severityText);
  return word === undefined ? undefined : SEVERITY.indexOf(word);
}

const HEX_ID = /^[0-9a-f]+$/;

function lineOf(record: Json, attributes: Record<string, string>): string {
  const text = anyValueText(record.body) ?? "";
  const traceId = typeof record.traceId === "string" && HEX_ID.test(record.traceId) ? record.traceId : "";
  const spanId = typeof record.spanId === "string" && HEX_ID.test(record.spanId) ? record.spanId : "";
  const eventName = typeof record.eventName === "string" ? record.eventName : "";
  if (traceId === "" && Object.keys(attributes).length === 0 && eventName === "") return text;
  const body = isObject(record.body) && isObject(record.body.kvlistValue) ? anyValueJson(record.body) : text;
  return JSON.stringify({
    ...attributes,
    ...(eventName ? { event: eventName } : {}),
    msg: body,
    ...(traceId ? { trace_id: traceId, span_id: spanId } : {}),
  });
}
