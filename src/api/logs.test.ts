// Logs through the real API: agent batches in (400 naming the field, 429 when
// the queue is full), JSON lines parsed, filters, events in the stream, and
// the SSE stream resumed with Last-Event-ID across a dropped connection.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Instance } from "../model/objects.ts";
import type { LogEntry } from "../observe/log-store.ts";
import { createToken } from "./auth.ts";
import { openEventStream } from "./sse-testing.ts";
import { apiCall } from "./testing.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-api-logs-"));

before(async () => {
  server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    // The test writes the queue itself (logs.flush()), so nothing depends on timing.
    logs: { flushMs: 0, maxQueueBytes: 64 * 1024, heartbeatMs: 150 },
  });
  // Nothing here runs instances: controllers would clean up the hand-made ones below.
  server.controllers.stop();
  assert.equal((await call("POST", "/tenants", { name: "acme" })).status, 201);
  for (const [tenant, app] of [
    ["default", "shop"],
    ["acme", "shop"],
  ]) {
    assert.equal((await call("POST", `/apps?tenant=${tenant}`, { name: app })).status, 201);
  }
  await putInstance("web-1", "default", "shop", "web");
  await putInstance("api-1", "default", "shop", "api");
  await putInstance("acme-1", "acme", "shop", "web");
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function putInstance(id: string, tenant: string, app: string, service: string) {
  await server.store.put<Partial<Instance>>("instance", id, {
    id,
    tenant,
    app,
    service,
    node: "n1",
    desired: "running",
    state: "running",
  });
}

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  apiCall(server, method, path, body, { headers });

const at = () => new Date().toISOString();
const ship = (lines: { instance: string; stream?: string; line: string }[]) =>
  call("POST", "/logs", {
    node: "n1",
    lines: lines.map((l) => ({ time: at(), stream: "stdout", ...l })),
  });

const openSse = (path: string, headers: Record<string, string> = {}) =>
  openEventStream<LogEntry>(`${server.url}/api/v1${path}`, {
    authorization: `Bearer ${server.adminToken}`,
    ...headers,
  });

describe("log ingest", () => {
  it("answers 400 naming the bad field of a malformed batch", async () => {
    const bad = await call("POST", "/logs", {
      node: "n1",
      lines: [{ instance: "web-1", time: "yesterday", stream: "stdin", line: "x" }],
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, "invalid");
    const fields = (bad.body.details as { field: string }[]).map((d) => d.field);
    assert.ok(fields.includes("body.lines.0.time"), String(fields));
    assert.ok(
      fields.some((f) => f.startsWith("body.lines.0.stream")),
      String(fields),
    );
    const missing = await call("POST", "/logs", { node: "n1" });
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /body\.lines/);
  });

  it("takes an agent's lines for its own node's instances only", async () => {
    await putInstance("other-node-1", "acme", "shop", "web");
    const o = await server.store.get<Instance>("instance", "other-node-1");
    await server.store.put("instance", "other-node-1", { ...(o?.value as Instance), node: "n2" });
    const agent = (await createToken(server.store, { name: "n1", kind: "agent", node: "n1" })).secret;
    const as = (node: string, instance: string, line: string) =>
      apiCall(
        server,
        "POST",
        "/logs",
        { node, lines: [{ instance, time: at(), stream: "stdout", line }] },
        { token: agent },
      );
    assert.equal((await as("n2", "other-node-1", "forged-by-n1")).status, 403, "another node's batch");
    assert.equal((await as("n1", "other-node-1", "forged-by-n1")).status, 204, "taken, the line dropped");
    assert.equal((await as("n1", "acme-1", "own-line-of-n1")).status, 204);
    server.logs.flush();
    const lines = (await call("GET", "/apps/shop/logs?tenant=acme&tail=100")).body.items.map(
      (e: LogEntry) => e.line,
    );
    assert.ok(lines.includes("own-line-of-n1"));
    assert.ok(!lines.includes("forged-by-n1"));
  });

  it("answers 429 with Retry-After when the queue is full, and takes the batch once it drained", async () => {
    server.logs.flush();
    const big = "z".repeat(40_000);
    assert.equal((await ship([{ instance: "web-1", line: `first ${big}` }])).status, 204);
    const refused = await ship([{ instance: "web-1", line: `second ${big}` }]);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.code, "too_many_requests");
    assert.ok(Number(refused.headers.get("retry-after")) >= 1);
    server.logs.flush();
    assert.equal((await ship([{ instance: "web-1", line: `second ${big}` }])).status, 204);
    const stats = (await call("GET", "/logs/stats")).body;
    assert.ok(stats.refused >= 1 && stats.maxBytes > 0, JSON.stringify(stats));
    const got = await call("GET", "/apps/shop/logs?text=zzzz&tail=10");
    assert.deepEqual(
      got.body.items.map((e: LogEntry) => e.line.slice(0, 6)),
      ["first ", "second"],
    );
  });
});

describe("log reads", () => {
  it("parses JSON lines and filters by level, text, stream, service and instance; tenants stay apart", async () => {
    assert.equal(
      (
        await ship([
          {
            instance: "web-1",
            line: JSON.stringify({ level: "warn", msg: "cart slow", trace_id: TRACE, ms: 812 }),
          },
          { instance: "api-1", stream: "stderr", line: "ERROR payment declined" },
          { instance: "web-1", line: "INFO served /cart" },
          { instance: "acme-1", line: "ERROR acme's own" },
        ])
      ).status,
      204,
    );
    const lines = async (query: string, tenant = "") =>
      (await call("GET", `/apps/shop/logs?tail=100${query}${tenant}`)).body.items as LogEntry[];
    const json = (await lines("&text=cart+slow"))[0];
    assert.equal(json.level, "warn");
    assert.equal(json.msg, "cart slow");
    assert.equal(json.traceId, TRACE);
    assert.deepEqual(json.fields, { level: "warn", msg: "cart slow", trace_id: TRACE, ms: 812 });
    assert.deepEqual(
      (await lines("&level=warn&stream=stdout")).map((e) => e.line),
      [JSON.stringify({ level: "warn", msg: "cart slow", trace_id: TRACE, ms: 812 })],
    );
    assert.deepEqual(
      (await lines("&level=error")).map((e) => e.line),
      ["ERROR payment declined"],
    );
    assert.deepEqual(
      (await lines("&stream=stderr")).map((e) => [e.service, e.instance, e.node]),
      [["api", "api-1", "n1"]],
    );
    assert.deepEqual(
      (await lines("&service=web&text=CART")).map((e) => e.line),
      [JSON.stringify({ level: "warn", msg: "cart slow", trace_id: TRACE, ms: 812 }), "INFO served /cart"],
    );
    assert.deepEqual(
      (await lines("&level=error", "&tenant=acme")).map((e) => e.line),
      ["ERROR acme's own"],
    );
    const bad = await call("GET", "/apps/shop/logs?level=loud");
    assert.equal(bad.status, 400);
    assert.equal(
      bad.body.message,
      "invalid request: querystring.level must be one of trace, debug, info, warn, error, fatal",
    );
  });

  it("takes since as a duration back from now or as a time with any offset", async () => {
    await ship([{ instance: "web-1", line: "since me" }]);
    const since = async (value: string) =>
      (await call("GET", `/apps/shop/logs?text=since+me&since=${encodeURIComponent(value)}`)).body.items
        .length;
    assert.equal(await since("10m"), 1);
    const soon = new Date(Date.now() + 60_000);
    // One minute ahead, written in UTC-05:00: nothing yet (comparing the strings would have said 1).
    const offset = new Date(soon.getTime() - 5 * 3600_000).toISOString().replace("Z", "-05:00");
    assert.equal(await since(offset), 0);
    assert.equal(await since(new Date(Date.now() - 60_000).toISOString()), 1);
    const bad = await call("GET", "/apps/shop/logs?since=10x");
    assert.equal(bad.status, 400);
    assert.equal(bad.body.details[0].field, "querystring.since");
  });

  it("puts the app's events in its stream and platform events in the tenant-wide one", async () => {
    // Creating the app recorded AppCreated; a scale of an unknown service records nothing.
    await call("POST", "/apps", { name: "blog" });
    const events = (await call("GET", "/apps/blog/logs?stream=event")).body.items as LogEntry[];
    assert.deepEqual(
      events.map((e) => [e.stream, e.reason, e.level, e.line]),
      [["event", "AppCreated", "info", "app blog created"]],
    );
    const all = (await call("GET", "/logs?stream=event&tail=100")).body.items as LogEntry[];
    assert.ok(all.some((e) => e.app === "blog" && e.reason === "AppCreated"));
    // Another tenant sees its own events only.
    const acme = (await call("GET", "/logs?stream=event&tail=100&tenant=acme")).body.items as LogEntry[];
    assert.ok(acme.length > 0 && acme.every((e) => e.tenant === "acme"));
  });
});

describe("SSE", () => {
  it("streams with id = seq, resumes with Last-Event-ID across a dropped connection, losing and repeating nothing", async () => {
    await ship([{ instance: "web-1", line: "sse before" }]);
    const first = openSse("/apps/shop/logs?text=sse&tail=1");
    await first.until(() => first.events.length >= 1, "the backlog");
    assert.equal(first.status, 200);
    assert.match(first.contentType, /^text\/event-stream/);
    assert.equal(first.events[0].data.line, "sse before");
    assert.equal(first.events[0].id, String(first.events[0].data.seq));

    await ship([
      { instance: "web-1", line: "sse live 1" },
      { instance: "api-1", stream: "stderr", line: "sse live 2" },
    ]);
    server.logs.flush();
    await first.until(() => first.events.length >= 3, "live lines");
    // The connection drops; lines keep coming meanwhile.
    await first.close();
    const lastId = first.events.at(-1)!.id!;
    await ship([{ instance: "web-1", line: "sse while away 1" }]);
    await ship([{ instance: "web-1", line: "sse while away 2" }]);
    server.logs.flush();

    const second = openSse("/apps/shop/logs?text=sse&tail=50", { "last-event-id": lastId });
    await second.until(() => second.events.length >= 2, "the missed lines");
    await ship([{ instance: "web-1", line: "sse after" }]);
    server.logs.flush();
    await second.until(() => second.events.length >= 3, "the next live line");
    await second.close();
    const seen = [...first.events, ...second.events].map((e) => e.data.line);
    assert.deepEqual(seen, [
      "sse before",
      "sse live 1",
      "sse live 2",
      "sse while away 1",
      "sse while away 2",
      "sse after",
    ]);
    const ids = [...first.events, ...second.events].map((e) => Number(e.id));
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
    );
  });

  it("sends heartbeat comments on an idle stream and answers a bad Last-Event-ID with 400", async () => {
    const idle = openSse("/logs/stream?text=nothing-matches-this");
    await idle.until(() => idle.comments.includes("ping"), "a heartbeat");
    assert.ok(idle.comments.includes("connected"));
    await idle.close();
    const bad = await call("GET", "/logs/stream", undefined, { "last-event-id": "abc" });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /Last-Event-ID/);
  });

  it("the tenant-wide stream carries events and lines, resumable with ?after=", async () => {
    const start = server.logs.lastSeq();
    await ship([{ instance: "web-1", line: "wide line" }]);
    await call("POST", "/apps", { name: "wiki" });
    server.logs.flush();
    const s = openSse(`/logs/stream?after=${start}`);
    await s.until(() => s.events.length >= 2, "a line and an event");
    await s.close();
    assert.deepEqual(
      s.events.map((e) => [e.data.stream, e.data.app, e.data.reason ?? e.data.line]),
      [
        ["stdout", "shop", "wide line"],
        ["event", "wiki", "AppCreated"],
      ],
    );
  });

  it("keeps NDJSON follow for the CLI, with the same cursor", async () => {
    const start = server.logs.lastSeq();
    await ship([{ instance: "web-1", line: "ndjson one" }]);
    server.logs.flush();
    const controller = new AbortController();
    const res = await fetch(`${server.url}/api/v1/apps/shop/logs?follow=true&after=${start}`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
      signal: controller.signal,
    });
    assert.match(res.headers.get("content-type") ?? "", /ndjson/);
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    controller.abort();
    const entry = JSON.parse(new TextDecoder().decode(value).split("\n")[0]) as LogEntry;
    assert.equal(entry.line, "ndjson one");
    assert.equal(entry.seq, start + 1);
  });

  it("a stream left open does not hold up the server's shutdown, and ends when the server closes", async (t) => {
    // A server of its own, closed here with the stream still open.
    const own = mkdtempSync(join(tmpdir(), "herd-api-logs-close-"));
    t.after(() => rmSync(own, { recursive: true, force: true }));
    const s = await startServer({ dataDir: own, port: 0, logger: silentLogger, logs: { heartbeatMs: 150 } });
    let closed = false;
    t.after(async () => {
      if (!closed) await s.close();
    });
    s.controllers.stop();
    const res = await fetch(`${s.url}/api/v1/logs/stream`, {
      headers: { accept: "text/event-stream", authorization: `Bearer ${s.adminToken}` },
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^:\s*connected/m, "the stream is open");

    const started = Date.now();
    const timeout = new Promise<"hung">((r) => setTimeout(() => r("hung"), 10_000).unref());
    assert.equal(await Promise.race([s.close().then(() => "closed" as const), timeout]), "closed");
    closed = true;
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 5000, `shutdown took ${tookMs} ms with a stream open`);
    // The client sees its stream end (not hang): reads finish, done or cut off.
    const end = await Promise.race([
      (async () => {
        try {
          while (!(await reader.read()).done) {}
          return "ended";
        } catch {
          return "ended";
        }
      })(),
      new Promise<"open">((r) => setTimeout(() => r("open"), 5000).unref()),
    ]);
    assert.equal(end, "ended");
  });
});
