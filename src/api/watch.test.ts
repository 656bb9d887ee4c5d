// The watch protocol against the real thing: /api/v1/watch and /snapshot of a
// real control plane over HTTP, on its SQLite store, and a real gateway
// following it. No stand-in: compaction and a watcher that falls behind are
// produced in the store itself, by a burst of writes larger than its history.
//
// The race the route decides: it pulls the first event before answering. A
// watch whose first pull fails at once (its revision is compacted) gets a
// proper 410; one that fails after the 200 went out (it fell behind) gets an
// error line and the end of the stream. Either way the client relists.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createLogger, silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { type Gateway, startGateway } from "../gateway/gateway.ts";
import { request, seedShop, startUpstream, testInstance, testService, waitFor } from "../gateway/testing.ts";
import { DEFAULT_HISTORY_LIMIT } from "../store/checks.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-api-watch-"));

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  // Nothing here runs instances: the controllers would rewrite the hand-made ones below.
  server.controllers.stop();
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const WEB = { app: "shop", service: "web" };

/**
 * More writes than the store keeps history for, in a way a watcher that
 * streams over HTTP falls behind: one commit of twice the limit (a watcher
 * takes one commit whole, however large), then one more commit, which finds
 * it still more than the limit behind (it writes a socket's worth a turn).
 * The last write leaves `key` running on `port`. Returns the last revision.
 */
async function burst(key: string, port: number): Promise<number> {
  const writes = [];
  for (let n = 0; n < 2 * DEFAULT_HISTORY_LIMIT; n++) {
    writes.push(
      server.store.put("instance", key, testInstance(key, WEB, "local", port, n % 2 ? "running" : "ready")),
    );
  }
  await Promise.all(writes);
  await server.store.put("instance", key, testInstance(key, WEB, "local", port, "running"));
  return server.store.revision();
}

/** An open NDJSON watch read by a plain HTTP client: its status, the lines so far, and its end. */
function openWatch(query: string) {
  const lines: string[] = [];
  let pending = "";
  let resolveEnded!: () => void;
  const ended = new Promise<void>((r) => {
    resolveEnded = r;
  });
  const answered = new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get(`${server.url}/api/v1/watch?${query}`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    req.on("response", (res) => {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        pending += chunk;
        const parts = pending.split("\n");
        pending = parts.pop()!;
        lines.push(...parts.filter((l) => l !== ""));
      });
      res.on("end", resolveEnded);
      res.on("close", resolveEnded);
      resolve(res);
    });
    req.on("error", reject);
  });
  return { answered, lines, ended };
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref()),
  ]);

test("a watcher that falls behind gets an error line and the end; from its revision, a 410; a snapshot and a watch from its revision then miss nothing", async () => {
  await seedShop(server.store, 1);
  const from = await server.store.revision();
  const watch = openWatch(`kinds=instance&from=${from}`);
  const res = await watch.answered;
  assert.equal(res.statusCode, 200, "nothing failed before the answer: the stream is open");
  assert.match(String(res.headers["content-type"]), /ndjson/);

  const last = await burst("web-1", 2);
  await withTimeout(watch.ended, 10_000, "the stream of a watcher that fell behind to end");
  const error = JSON.parse(watch.lines.at(-1) ?? "{}");
  assert.equal(error.type, "error", `the last line: ${watch.lines.at(-1)}`);
  assert.match(error.error, new RegExp(`fell more than ${DEFAULT_HISTORY_LIMIT} changes behind`));
  for (const line of watch.lines.slice(0, -1)) assert.equal(JSON.parse(line).type, "put");

  // Its revision is compacted now: the first pull fails before the answer, so this is a 410, not a stream.
  const gone = await apiCall(server, "GET", `/watch?kinds=instance&from=${from}`);
  assert.equal(gone.status, 410);
  assert.equal(gone.body.code, "gone");
  assert.match(gone.body.message, new RegExp(`watch from revision ${from} is no longer possible`));

  // The client relists: the snapshot holds the last write, and a watch from its revision sees the next one.
  const snap = await apiCall(server, "GET", "/snapshot?kinds=instance");
  assert.equal(snap.status, 200);
  assert.ok(snap.body.revision >= last);
  const item = snap.body.items.find((o: { key: string }) => o.key === "web-1");
  assert.equal(item.revision, last);
  assert.equal(item.value.state, "running"); // the last of the burst (an even n)
  const next = openWatch(`kinds=instance&from=${snap.body.revision}`);
  assert.equal((await next.answered).statusCode, 200);
  const put = await server.store.put("instance", "web-1", testInstance("web-1", WEB, "local", 3, "draining"));
  await withTimeout(
    (async () => {
      while (!next.lines.some((l) => JSON.parse(l).revision === put.revision)) {
        await new Promise((r) => setTimeout(r, 10));
      }
    })(),
    5000,
    "the change after the snapshot",
  );
  const seen = next.lines.map((l) => JSON.parse(l)).filter((e) => e.type === "put");
  assert.deepEqual(
    seen.map((e) => [e.key, e.revision, e.object.value.state]),
    [["web-1", put.revision, "draining"]],
  );
  (await next.answered).destroy();
});

test("a watch from a revision still in history replays it, then goes on live", async () => {
  const from = await server.store.revision();
  const a = await server.store.put("instance", "hist-1", testInstance("hist-1", WEB, "local", 4));
  const w = openWatch(`kinds=instance&from=${from}`);
  assert.equal((await w.answered).statusCode, 200);
  const b = await server.store.put("instance", "hist-2", testInstance("hist-2", WEB, "local", 5));
  await withTimeout(
    (async () => {
      while (w.lines.length < 2) await new Promise((r) => setTimeout(r, 10));
    })(),
    5000,
    "both changes",
  );
  assert.deepEqual(
    w.lines.map((l) => JSON.parse(l)).map((e) => [e.type, e.key, e.revision]),
    [
      ["put", "hist-1", a.revision],
      ["put", "hist-2", b.revision],
    ],
  );
  (await w.answered).destroy();
});

test("a real gateway whose watch falls behind relists (410 → fresh snapshot) and serves the new state", async (t) => {
  const upstream = await startUpstream((_req, res) => res.end("up"));
  t.after(() => upstream.close());
  await seedShop(server.store, upstream.port);
  const gwDir = mkdtempSync(join(tmpdir(), "herd-api-watch-gw-"));
  let gateway: Gateway | undefined;
  // The gateway first: closing writes its cache into gwDir.
  t.after(async () => {
    await gateway?.close();
    rmSync(gwDir, { recursive: true, force: true });
  });
  const logged: string[] = [];
  gateway = await startGateway({
    server: server.url,
    token: server.adminToken,
    port: 0,
    host: "127.0.0.1",
    dataDir: gwDir,
    logger: createLogger("test", "info", (l) => logged.push(l)),
  });
  assert.equal((await request(gateway.port, "shop.test", "/")).body, "up");
  // Its watch is live (a change reaches it), so the burst below overtakes an open stream.
  const live = await server.store.put(
    "instance",
    "web-1",
    testInstance("web-1", WEB, "local", upstream.port),
  );
  await waitFor(() => gateway.table().version >= live.revision, 5000, "the gateway's watch to be live");
  const before = gateway.table().version;

  // The burst ends with web-1 running on the upstream's port; then a second app appears.
  const last = await burst("web-1", upstream.port);
  assert.ok(last > before + DEFAULT_HISTORY_LIMIT);
  await server.store.put(
    "service",
    "default/blog/web",
    testService("default", "blog", "web", [{ host: "blog.test" }]),
  );
  const blog = await server.store.put(
    "instance",
    "blog-1",
    testInstance("blog-1", { app: "blog", service: "web" }, "local", upstream.port),
  );
  await waitFor(() => gateway.table().version >= blog.revision, 10_000, "the gateway to catch up");
  // Its stream ended on the error line; the watch from its revision was a 410; it took a snapshot.
  const steps = [
    /watch ended; reconnecting/,
    /watch history compacted; taking a new snapshot/,
    /applied snapshot/,
  ];
  let at = logged.findIndex((l) => /watch ended; reconnecting/.test(l)) - 1;
  for (const step of steps) {
    const found = logged.findIndex((l, i) => i > at && step.test(l));
    assert.ok(found > at, `${step} after line ${at} of the gateway's log:\n${logged.join("\n")}`);
    at = found;
  }
  assert.equal((await request(gateway.port, "shop.test", "/")).body, "up");
  assert.equal((await request(gateway.port, "blog.test", "/")).body, "up");
});
