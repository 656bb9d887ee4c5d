import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, it } from "node:test";
import { ManualClock } from "../common/clock.ts";
import { type LogInput, LogStore } from "./log-store.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "herd-logstore-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const open = (options: ConstructorParameters<typeof LogStore>[1] = {}) =>
  new LogStore(join(dir, `logs-${++n}.db`), { flushMs: 0, ...options });

const line = (text: string, more: Partial<LogInput> = {}): LogInput => ({
  time: new Date().toISOString(),
  tenant: "default",
  app: "shop",
  service: "web",
  instance: "web-1",
  stream: "stdout",
  line: text,
  ...more,
});

describe("LogStore", () => {
  it("filters by service, instance, stream, level and above, and text in any case", () => {
    const logs = open();
    try {
      logs.append([
        line("INFO started"),
        line(JSON.stringify({ level: "warn", msg: "Slow Query", trace_id: TRACE, ms: 900 }), {
          instance: "web-2",
        }),
        line("ERROR Payment failed", { stream: "stderr", service: "api", instance: "api-1" }),
        line("plain, no level"),
        line("other app", { app: "blog" }),
        line("other tenant", { tenant: "acme" }),
      ]);
      const texts = (q: Parameters<LogStore["query"]>[0]) => logs.query(q).map((e) => e.line);
      const base = { tenant: "default", app: "shop" };
      assert.equal(texts(base).length, 4);
      assert.deepEqual(texts({ ...base, level: "warn" }).length, 2);
      assert.deepEqual(texts({ ...base, level: "error" }), ["ERROR Payment failed"]);
      assert.deepEqual(texts({ ...base, stream: "stderr" }), ["ERROR Payment failed"]);
      assert.deepEqual(texts({ ...base, service: "api" }), ["ERROR Payment failed"]);
      assert.deepEqual(texts({ ...base, instance: "web-1" }), ["INFO started", "plain, no level"]);
      assert.deepEqual(texts({ ...base, text: "payment FAILED" }), ["ERROR Payment failed"]);
      assert.deepEqual(texts({ ...base, text: "slow query" }).length, 1);
      const json = logs.query({ ...base, instance: "web-2" })[0];
      assert.equal(json.level, "warn");
      assert.equal(json.msg, "Slow Query");
      assert.equal(json.traceId, TRACE);
      assert.deepEqual(json.fields, { level: "warn", msg: "Slow Query", trace_id: TRACE, ms: 900 });
      assert.equal(logs.query(base)[0].level, "info");
      assert.equal(logs.query(base)[3].level, undefined);
      // The tenant-wide stream: every app of the tenant, never another tenant's.
      assert.deepEqual(texts({ tenant: "default" }).length, 5);
      assert.deepEqual(texts({ tenant: "acme" }), ["other tenant"]);
    } finally {
      logs.close();
    }
  });

  it("matches text literally (% and _ are not wildcards) and folds non-ASCII case", () => {
    const logs = open();
    try {
      logs.append([
        line("disk 91% full"),
        line("disk 91x full"),
        line("user_id=7"),
        line("userXid=7"),
        line("Échec du paiement"),
      ]);
      const texts = (text: string) => logs.query({ tenant: "default", app: "shop", text }).map((e) => e.line);
      assert.deepEqual(texts("91% FULL"), ["disk 91% full"]);
      assert.deepEqual(texts("user_id"), ["user_id=7"]);
      assert.deepEqual(texts("échec"), ["Échec du paiement"]);
    } finally {
      logs.close();
    }
  });

  it("keeps events in the same stream, platform events visible to every tenant", () => {
    const logs = open();
    try {
      logs.append([line("hello")]);
      logs.appendEvent({
        id: "e1",
        time: new Date().toISOString(),
        tenant: "default",
        app: "shop",
        service: "web",
        instance: "web-1",
        reason: "InstanceCrashed",
        message: "web-1 exited with code 1",
        type: "warning",
      });
      logs.appendEvent({
        id: "e2",
        time: new Date().toISOString(),
        node: "n1",
        reason: "NodeLost",
        message: "node n1 lost",
        type: "warning",
      });
      const app = logs.query({ tenant: "default", app: "shop" });
      assert.deepEqual(
        app.map((e) => [e.stream, e.reason, e.level, e.line]),
        [
          ["stdout", undefined, undefined, "hello"],
          ["event", "InstanceCrashed", "warn", "web-1 exited with code 1"],
        ],
      );
      // The platform's own events name nodes: a platform admin's read asks for them, a tenant's never sees them.
      assert.deepEqual(logs.query({ tenant: "acme", stream: "event" }), []);
      const all = logs.query({ tenant: "acme", stream: "event", platform: true });
      assert.deepEqual(
        all.map((e) => [e.reason, e.node, e.app]),
        [["NodeLost", "n1", ""]],
      );
    } finally {
      logs.close();
    }
  });

  it("pages after a cursor and takes the last N without one", () => {
    const logs = open();
    try {
      logs.append(Array.from({ length: 50 }, (_, i) => line(`l${i}`)));
      const all = logs.query({ tenant: "default", app: "shop", tail: 1000 });
      assert.equal(all.length, 50);
      const tail = logs.query({ tenant: "default", app: "shop", tail: 3 });
      assert.deepEqual(
        tail.map((e) => e.line),
        ["l47", "l48", "l49"],
      );
      const page = logs.query({ tenant: "default", app: "shop", after: all[9].seq, limit: 5 });
      assert.deepEqual(
        page.map((e) => e.line),
        ["l10", "l11", "l12", "l13", "l14"],
      );
      assert.equal(logs.lastSeq(), all[49].seq);
    } finally {
      logs.close();
    }
  });

  it("refuses a batch when the queue is full and takes it again once written", () => {
    const logs = open({ maxQueueBytes: 10_000 });
    try {
      assert.equal(logs.append([line("x".repeat(9000))]), true);
      assert.equal(logs.append([line("y".repeat(2000))]), false);
      assert.equal(logs.stats().refused, 1);
      assert.ok(logs.retryAfterSeconds() >= 1);
      logs.flush();
      assert.equal(logs.append([line("y".repeat(2000))]), true);
      // Any batch fits an empty queue, however large.
      logs.flush();
      assert.equal(logs.append([line("z".repeat(50_000))]), true);
      assert.equal(logs.query({ tenant: "default", app: "shop" }).length, 3);
    } finally {
      logs.close();
    }
  });

  it("drops entries past their age, oldest first", () => {
    const clock = new ManualClock(Date.parse("2026-01-10T00:00:00Z"));
    const logs = open({ clock, maxAgeMs: 86_400_000 });
    try {
      logs.append([
        line("old", { time: "2026-01-08T00:00:00.000Z" }),
        line("older but later", { time: "2026-01-08T12:00:00.000Z" }),
        line("fresh", { time: "2026-01-09T12:00:00.000Z" }),
      ]);
      logs.flush();
      assert.deepEqual(
        logs.query({ tenant: "default", app: "shop" }).map((e) => e.line),
        ["fresh"],
      );
      assert.equal(logs.stats().droppedByAge, 2);
      clock.advance(86_400_000);
      logs.trim();
      assert.equal(logs.query({ tenant: "default", app: "shop" }).length, 0);
    } finally {
      logs.close();
    }
  });

  it("stays under its size limit, dropping the oldest", () => {
    const maxBytes = 2 * 1024 * 1024;
    const logs = open({ maxBytes });
    try {
      const text = "x".repeat(1000);
      for (let batch = 0; batch < 60; batch++) {
        logs.append(Array.from({ length: 100 }, (_, i) => line(`${batch}-${i} ${text}`)));
        logs.flush();
      }
      const stats = logs.stats();
      assert.ok(stats.usedBytes <= maxBytes, `${stats.usedBytes} > ${maxBytes}`);
      assert.ok(stats.droppedBySize > 0);
      const kept = logs.query({ tenant: "default", app: "shop", tail: 10_000 });
      // The newest survive, the oldest went.
      assert.match(kept.at(-1)!.line, /^59-99 /);
      assert.ok(!kept.some((e) => e.line.startsWith("0-0 ")));
      assert.ok(kept.length > 500);
    } finally {
      logs.close();
    }
  });

  it("gives way rather than eat the disk's reserve", () => {
    // A reserve larger than any disk: whatever is written goes again at once.
    const logs = open({ reserveDiskBytes: Number.MAX_SAFE_INTEGER });
    try {
      logs.append([line("a"), line("b")]);
      logs.flush();
      assert.equal(logs.query({ tenant: "default", app: "shop" }).length, 0);
      assert.equal(logs.stats().droppedBySize, 2);
    } finally {
      logs.close();
    }
  });

  it("opens a logs.db from before levels and events, keeping its lines", () => {
    const file = join(dir, "old.db");
    const old = new DatabaseSync(file);
    old.exec(`CREATE TABLE logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL, tenant TEXT NOT NULL, app TEXT NOT NULL, service TEXT NOT NULL,
        instance TEXT NOT NULL, stream TEXT NOT NULL, line TEXT NOT NULL);`);
    old
      .prepare(
        "INSERT INTO logs (time, tenant, app, service, instance, stream, line) VALUES (?, ?, ?, ?, ?, ?, ?)",
      )
      .run(new Date().toISOString(), "default", "shop", "web", "web-1", "stdout", "ERROR from before");
    old.close();
    const logs = new LogStore(file, { flushMs: 0 });
    try {
      logs.append([line("WARN after")]);
      const got = logs.query({ tenant: "default", app: "shop" });
      assert.deepEqual(
        got.map((e) => [e.seq, e.line, e.level]),
        [
          [1, "ERROR from before", undefined],
          [2, "WARN after", "warn"],
        ],
      );
    } finally {
      logs.close();
    }
  });

  it("wakes watchers after each write", () => {
    const logs = open();
    try {
      let woken = 0;
      const stop = logs.watch(() => woken++);
      logs.append([line("a")]);
      logs.flush();
      logs.flush();
      stop();
      logs.append([line("b")]);
      logs.flush();
      assert.equal(woken, 1);
    } finally {
      logs.close();
    }
  });
});
