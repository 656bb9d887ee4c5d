/**
 * Logs: agents ship instance lines in; people read one app's stream or the
 * tenant's whole stream (apps, and platform events for a platform admin), as a list, an NDJSON
 * follow (the CLI) or Server-Sent Events.
 *
 *   POST /api/v1/logs (agent)  ─► 400 naming the field │ 429 Retry-After (queue full) │ 204
 *   GET  /api/v1/apps/:app/logs[?follow=true]           ─► {items} │ NDJSON │ SSE (Accept: text/event-stream)
 *   GET  /api/v1/logs[?follow=true]                      ─► the same for the tenant's whole stream
 *   GET  /api/v1/logs/stream                             ─► always SSE
 *   GET  /api/v1/logs/stats                              ─► store counters
 *
 * A follower pages through the store from its cursor (`after`, or SSE's
 * `Last-Event-ID`, which wins) and then waits for the store's next write:
 * the store is the only source, so a reader never sees a line twice or
 * skips one, however far behind it starts.
 */

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { HerdError } from "../../common/errors.ts";
import type { Run } from "../../model/job.ts";
import type { Instance } from "../../model/objects.ts";
import type { LogBatch } from "../../model/protocol.ts";
import type { LogLevel } from "../../observe/log-parse.ts";
import type { LogEntry, LogInput, LogQuery, LogStore, LogStream } from "../../observe/log-store.ts";
import { parseDurationMicros } from "../../observe/traces/span.ts";
import type { ApiDeps } from "../deps.ts";
import { AllLogsQuery, LogBatchBody, tenantOf } from "../schemas.ts";
import { drained } from "./streams.ts";

/** Query parameters of a log read (validated by the schemas). */
export interface LogsParams {
  tenant?: string;
  app?: string;
  service?: string;
  instance?: string;
  stream?: LogStream;
  level?: LogLevel;
  text?: string;
  tail?: number;
  after?: number;
  since?: string;
  follow?: boolean;
}

/** Entries read from the store per round while a follower catches up. */
const PAGE = 500;
/** NDJSON followers get a `{"type":"ping"}` line this often (the CLI ignores it). */
const NDJSON_PING_MS = 10_000;

export function logRoutes(api: FastifyInstance, deps: ApiDeps): void {
  // Instance ids → their app, for log lines (instances are deleted once stopped; their last lines still count).
  const owners = new Map<string, { tenant: string; app: string; service: string; node: string | null }>();
  api.post(
    "/logs",
    {
      schema: {
        summary: "Agents ship instance log lines",
        description:
          "400 names the first bad fields; 429 with Retry-After when the ingest queue is full (send the same batch again later).",
        tags: ["agent protocol"],
        body: LogBatchBody,
      },
      bodyLimit: 16 * 1024 * 1024,
    },
    async (req, reply) => {
      const batch = req.body as LogBatch;
      // An agent ships lines of its own node's instances only (others are dropped), under its own name.
      const agent = req.herd.principal.token.kind === "agent" ? req.herd.principal.token.node : undefined;
      if (agent !== undefined && batch.node !== agent)
        throw new HerdError("forbidden", `this agent token belongs to node ${agent}, not ${batch.node}`);
      const entries: LogInput[] = [];
      for (const l of batch.lines) {
        let owner = owners.get(l.instance);
        // A pet moved to another node keeps its id: the cached node is read again before a line is dropped.
        if (!owner || (agent !== undefined && owner.node !== agent)) {
          // A run's lines (controllers/jobs.ts) come under its id like an instance's.
          const o =
            (await deps.store.get<Instance>("instance", l.instance)) ??
            (await deps.store.get<Run>("run", l.instance));
          if (!o) continue;
          owner = { tenant: o.value.tenant, app: o.value.app, service: o.value.service, node: o.value.node };
          if (owners.size > 100_000) owners.clear();
          owners.set(l.instance, owner);
        }
        if (agent !== undefined && owner.node !== agent) continue;
        entries.push({
          tenant: owner.tenant,
          app: owner.app,
          service: owner.service,
          instance: l.instance,
          node: batch.node,
          time: l.time,
          stream: l.stream,
          line: l.line,
        });
      }
      if (!deps.logs.append(entries)) {
        const wait = deps.logs.retryAfterSeconds();
        return reply
          .code(429)
          .header("retry-after", String(wait))
          .send({
            code: "too_many_requests",
            message: `log ingest queue is full: ${entries.length} lines refused, send them again after ${wait}s`,
          });
      }
      reply.code(204);
    },
  );

  api.get(
    "/logs",
    {
      schema: {
        summary:
          "The tenant's whole log stream: every app's lines (and the platform's events for a platform admin)",
        description:
          "Same filters as /apps/{app}/logs plus app. With follow=true an NDJSON stream; with Accept: text/event-stream, SSE.",
        tags: ["logs"],
        querystring: AllLogsQuery,
      },
    },
    async (req, reply) =>
      serveLogs(
        req,
        reply,
        deps,
        logQueryOf(req.query as LogsParams, tenantOf(req), req.herd.principal.admin),
      ),
  );

  api.get(
    "/logs/stats",
    {
      schema: {
        summary: "Log store counters: written, refused (429), dropped by age and size, bytes",
        tags: ["logs"],
      },
    },
    async () => deps.logs.stats(),
  );

  api.get(
    "/logs/stream",
    {
      schema: {
        summary: "The tenant's log stream as Server-Sent Events (id: = seq; resume with Last-Event-ID)",
        tags: ["logs"],
        querystring: AllLogsQuery,
      },
    },
    async (req, reply) => {
      await streamLogs(
        req,
        reply,
        deps.logs,
        logQueryOf(req.query as LogsParams, tenantOf(req), req.herd.principal.admin),
        "sse",
        deps.logsHeartbeatMs,
      );
    },
  );
}

/**
 * `since`: an RFC 3339 time (any offset) or a duration back from now (`10m`,
 * as `herd logs --since` and `/traces?since=` take), as the UTC ISO string the
 * store compares with.
 */
export function sinceParam(value: string, now = Date.now()): string {
  const us = parseDurationMicros(value);
  if (us !== null && /[a-zµ]$/.test(value.trim())) return new Date(now - us / 1000).toISOString();
  const t = Date.parse(value);
  if (/^\d{4}-\d\d-\d\dT/.test(value) && !Number.isNaN(t)) return new Date(t).toISOString();
  throw new HerdError(
    "invalid",
    `querystring.since: must be a time like 2026-01-01T12:00:00Z or a duration back from now like 10m, got ${value}`,
    [{ field: "querystring.since", message: "must be an RFC 3339 time or a duration like 10m" }],
  );
}

/**
 * The store query for validated parameters, in the request's tenant;
 * `platform`: the platform's own events too (a platform admin's whole stream).
 */
export function logQueryOf(p: LogsParams, tenant: string, platform = false): LogQuery {
  return {
    tenant,
    platform,
    app: p.app,
    service: p.service,
    instance: p.instance,
    stream: p.stream,
    level: p.level,
    text: p.text,
    tail: p.tail,
    after: p.after,
    since: p.since === undefined ? undefined : sinceParam(p.since),
  };
}

/** Answers a log read: a list, or (follow=true / an SSE Accept) a stream. */
export async function serveLogs(
  req: FastifyRequest,
  reply: FastifyReply,
  deps: ApiDeps,
  q: LogQuery,
): Promise<{ items: LogEntry[] } | undefined> {
  const sse = /\btext\/event-stream\b/.test(req.headers.accept ?? "");
  if (sse) {
    await streamLogs(req, reply, deps.logs, q, "sse", deps.logsHeartbeatMs);
    return undefined;
  }
  if (!(req.query as LogsParams).follow) return { items: deps.logs.query(q) };
  await streamLogs(req, reply, deps.logs, q, "ndjson", deps.logsHeartbeatMs);
  return undefined;
}

/**
 * Streams entries matching `q` until the client goes: first the backlog
 * (after the cursor, or the last `tail`), then each new entry as it is
 * written. SSE: `id: <seq>` on every entry and a `: ping` comment every
 * heartbeatMs so proxies keep an idle stream open.
 */
export async function streamLogs(
  req: FastifyRequest,
  reply: FastifyReply,
  logs: LogStore,
  q: LogQuery,
  format: "sse" | "ndjson",
  heartbeatMs: number,
): Promise<void> {
  const lastEventId = req.headers["last-event-id"];
  let after = q.after;
  if (format === "sse" && typeof lastEventId === "string" && lastEventId.trim() !== "") {
    if (!/^\d{1,15}$/.test(lastEventId.trim())) {
      throw new HerdError(
        "invalid",
        "Last-Event-ID must be the seq of the last entry seen (a whole number)",
        [{ field: "headers.last-event-id", message: `is ${JSON.stringify(lastEventId)}` }],
      );
    }
    after = Number(lastEventId.trim());
  }

  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    "content-type": format === "sse" ? "text/event-stream; charset=utf-8" : "application/x-ndjson",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
  });
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  let wake: (() => void) | undefined;
  let dirty = true;
  const stopWatching = logs.watch(() => {
    dirty = true;
    if (logs.ended) abort.abort();
    wake?.();
  });
  abort.signal.addEventListener("abort", () => wake?.());
  let ping = false;
  const pinger = setInterval(
    () => {
      ping = true;
      wake?.();
    },
    format === "sse" ? heartbeatMs : Math.min(heartbeatMs, NDJSON_PING_MS),
  );
  const write = async (text: string) => {
    if (!res.write(text)) await drained(reply);
  };
  const encode =
    format === "sse"
      ? (e: LogEntry) => `id: ${e.seq}\ndata: ${JSON.stringify(e)}\n\n`
      : (e: LogEntry) => `${JSON.stringify(e)}\n`;
  try {
    // An EventSource reconnects after a second, sending Last-Event-ID; ": connected" shows the stream is open.
    if (format === "sse") await write("retry: 1000\n: connected\n\n");
    if (after === undefined) {
      // No cursor: the last `tail` entries (or a page from `since`), then everything after them.
      const backlog = logs.query(q.since === undefined ? q : { ...q, limit: PAGE });
      // Read in the same tick as the backlog: nothing is written in between.
      const newest = logs.lastSeq();
      after = q.since !== undefined && backlog.length === PAGE ? backlog[PAGE - 1].seq : newest;
      for (const e of backlog) await write(encode(e));
    }
    while (!abort.signal.aborted) {
      if (dirty) {
        dirty = false;
        const page = logs.query({ ...q, since: undefined, after, limit: PAGE });
        // Same tick as the page: when it is not full, nothing up to `newest` is left to match, so
        // the next read starts there (a rare filter does not rescan everything since its last match).
        const newest = page.length < PAGE ? logs.lastSeq() : 0;
        for (const e of page) {
          if (abort.signal.aborted) break;
          await write(encode(e));
          after = e.seq;
        }
        if (page.length === PAGE) dirty = true;
        else after = Math.max(after, newest);
      }
      if (ping) {
        ping = false;
        await write(format === "sse" ? ": ping\n\n" : '{"type":"ping"}\n');
      }
      if (dirty || abort.signal.aborted) continue;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    clearInterval(pinger);
    stopWatching();
    res.end();
  }
}
