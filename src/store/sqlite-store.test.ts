import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DatabaseSync } from "node:sqlite";
import { test } from "node:test";
import { isCode } from "../common/errors.ts";
import { SqliteStore } from "./sqlite-store.ts";
import { runStoreConformance } from "./store.case.test.ts";

runStoreConformance("sqlite", async (options) => {
  const dir = await mkdtemp(join(tmpdir(), "herd-store-"));
  try {
    const store = SqliteStore.open(join(dir, "store.db"), options);
    return {
      store,
      cleanup: async () => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
});

/** Runs `body` with a fresh temp dir that is removed however the test ends. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "herd-store-"));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("sqlite: a reopened store has every object, its history, and continues the revision", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.db");
    const first = SqliteStore.open(path);
    try {
      await first.put("app", "t/a", { v: 1 });
      await first.put("app", "t/b", { v: 1 });
      await first.put("app", "t/a", { v: 2 });
      await first.delete("app", "t/b");
    } finally {
      await first.close();
    }

    const second = SqliteStore.open(path);
    const controller = new AbortController();
    try {
      // The last change was a delete: the revision comes from meta, not from the objects left.
      assert.equal(await second.revision(), 4);
      assert.deepEqual(
        (await second.list("app")).items.map((o) => [o.key, o.revision, o.createRevision, o.value]),
        [["t/a", 3, 1, { v: 2 }]],
      );
      const next = await second.put("app", "t/c", {});
      assert.equal(next.revision, 5);
      const history: string[] = [];
      for await (const event of second.watch({ fromRevision: 0, signal: controller.signal })) {
        history.push(`${event.revision} ${event.type} ${event.key}`);
        if (event.revision === 5) controller.abort();
      }
      assert.deepEqual(history, ["1 put t/a", "2 put t/b", "3 put t/a", "4 delete t/b", "5 put t/c"]);
    } finally {
      controller.abort();
      await second.close();
    }
  });
});

test("sqlite: compaction is remembered across reopen", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.db");
    const first = SqliteStore.open(path, { historyLimit: 2 });
    try {
      for (let n = 0; n < 5; n++) await first.put("event", `e${n}`, { n });
    } finally {
      await first.close();
    }
    // A larger limit now does not bring compacted history back.
    const second = SqliteStore.open(path, { historyLimit: 100 });
    const controller = new AbortController();
    try {
      await assert.rejects(
        async () => {
          for await (const _ of second.watch({ fromRevision: 1, signal: controller.signal }))
            assert.fail("gone first");
        },
        (err) => isCode(err, "gone"),
      );
    } finally {
      controller.abort();
      await second.close();
    }
  });
});

test("sqlite: two connections to one file share revisions and see each other's conflicts", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.db");
    const a = SqliteStore.open(path);
    const b = SqliteStore.open(path);
    try {
      const created = await a.put("node", "n1", { v: 1 });
      const updated = await b.put("node", "n1", { v: 2 }, { expectRevision: created.revision });
      assert.equal(updated.revision, 2);
      await assert.rejects(a.put("node", "n1", { v: 3 }, { expectRevision: created.revision }), (err) =>
        isCode(err, "conflict"),
      );
      assert.deepEqual((await a.get("node", "n1"))?.value, { v: 2 });
      assert.equal(await a.revision(), 2);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

test("sqlite: a watcher more than historyLimit changes behind ends with gone", async () => {
  await withTempDir(async (dir) => {
    const store = SqliteStore.open(join(dir, "store.db"), { historyLimit: 5 });
    const controller = new AbortController();
    try {
      const events = store.watch({ signal: controller.signal })[Symbol.asyncIterator]();
      for (let n = 0; n < 7; n++) await store.put("event", `e${n}`, { n });
      await assert.rejects(events.next(), (err) => isCode(err, "gone"));
    } finally {
      controller.abort();
      await store.close();
    }
  });
});

test("sqlite: one commit larger than historyLimit reaches a watcher that keeps up, whole", async () => {
  await withTempDir(async (dir) => {
    const store = SqliteStore.open(join(dir, "store.db"), { historyLimit: 5 });
    const controller = new AbortController();
    try {
      const events = store.watch({ signal: controller.signal })[Symbol.asyncIterator]();
      const first = events.next();
      // Twenty puts in one turn: one transaction, published at once.
      await Promise.all(Array.from({ length: 20 }, (_, n) => store.put("event", `e${n}`, { n })));
      const keys = [((await first).value as { key: string }).key];
      while (keys.length < 20) keys.push(((await events.next()).value as { key: string }).key);
      assert.deepEqual(
        keys,
        Array.from({ length: 20 }, (_, n) => `e${n}`),
      );
      // Still a watcher more than the limit behind before a commit is cut off.
      for (let n = 0; n < 7; n++) await store.put("event", `f${n}`, { n });
      const seen: string[] = [];
      await assert.rejects(
        (async () => {
          for (;;) seen.push(((await events.next()).value as { key: string }).key);
        })(),
        (err) => isCode(err, "gone"),
      );
      assert.ok(seen.length < 7, `gone after ${seen.length} of 7`);
    } finally {
      controller.abort();
      await store.close();
    }
  });
});

/**
 * Runs a writer process that prints each key once its put resolved (after
 * COMMIT), kills it with SIGKILL after 300 keys, and checks that every printed
 * key is in the file. `body` is the writer's loop, with `store` open.
 */
async function killWriterAndCheck(body: string): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.db");
    const script = join(dir, "writer.mjs");
    await writeFile(
      script,
      `import { SqliteStore } from ${JSON.stringify(new URL("./sqlite-store.ts", import.meta.url).href)};
const store = SqliteStore.open(process.argv[2]);
${body}
`,
    );
    const child = spawn(process.execPath, [script, path], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      let stderr = "";
      child.stderr.on("data", (chunk) => {
        stderr += chunk;
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on("close", (_code, signal) => resolve(signal)),
      );
      const acknowledged: string[] = [];
      // Keep reading after the kill: lines already in the pipe were acknowledged too.
      for await (const line of createInterface({ input: child.stdout })) {
        acknowledged.push(line);
        if (acknowledged.length === 300) child.kill("SIGKILL");
      }
      assert.equal(await exited, "SIGKILL", `the writer was killed mid-stream (stderr: ${stderr})`);
      assert.ok(acknowledged.length >= 300);

      const check = new DatabaseSync(path);
      try {
        assert.equal(
          (check.prepare("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check,
          "ok",
        );
      } finally {
        check.close();
      }
      const store = SqliteStore.open(path);
      try {
        const stored = new Set((await store.list("event")).items.map((o) => o.key));
        const missing = acknowledged.filter((key) => !stored.has(key));
        assert.deepEqual(missing, [], "acknowledged keys missing after the crash");
        const revision = await store.revision();
        assert.ok(revision >= acknowledged.length);
        assert.equal(revision, stored.size, "the revision counts exactly the writes stored");
        assert.equal((await store.put("event", "after", {})).revision, revision + 1);
      } finally {
        await store.close();
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
}

test("sqlite: every acknowledged write survives SIGKILL of the writing process", {
  timeout: 60_000,
}, async () => {
  await killWriterAndCheck(`for (let n = 0; n < 100000; n++) {
  const key = "e" + String(n).padStart(6, "0");
  await store.put("event", key, { n, padding: "x".repeat(500) });
  process.stdout.write(key + "\\n");
}`);
});

test("sqlite: group commit: writes in flight together survive SIGKILL once acknowledged", {
  timeout: 60_000,
}, async () => {
  // 50 writers at once: each transaction holds many writes, and the kill lands
  // while some groups are queued, some committing, some acknowledged.
  await killWriterAndCheck(`let n = 0;
await Promise.all(Array.from({ length: 50 }, async () => {
  for (;;) {
    const key = "e" + String(n++).padStart(6, "0");
    await store.put("event", key, { padding: "x".repeat(500) });
    process.stdout.write(key + "\\n");
  }
}));`);
});

test("sqlite: group commit: one transaction for the writes of one turn, a conflict fails only its own", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.db");
    const store = SqliteStore.open(path);
    const controller = new AbortController();
    try {
      const base = await store.put("node", "n1", { v: 0 });
      const events = store
        .watch({ fromRevision: base.revision, signal: controller.signal })
        [Symbol.asyncIterator]();
      const results = await Promise.allSettled([
        store.put("app", "t/a", { v: 1 }),
        store.put("node", "n1", { v: 1 }, { expectRevision: base.revision + 5 }),
        store.delete("app", "t/missing"),
        store.put("app", "t/b", { v: 1 }),
        store.put("node", "n1", { v: 2 }, { expectRevision: base.revision }),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"],
      );
      assert.ok(isCode((results[1] as PromiseRejectedResult).reason, "conflict"));
      // The revisions are contiguous: the failed write took none.
      assert.deepEqual(
        results.map((r) =>
          r.status === "fulfilled" && typeof r.value === "object" ? r.value.revision : r.status,
        ),
        [2, "rejected", "fulfilled", 3, 4],
      );
      const seen: string[] = [];
      for (let n = 0; n < 3; n++) {
        const { value } = await events.next();
        seen.push(`${value.revision} ${value.key}`);
      }
      assert.deepEqual(seen, ["2 t/a", "3 t/b", "4 n1"]);
      // All three went to disk in one transaction: the file's write counter moved once.
      const check = new DatabaseSync(path);
      try {
        const before = (check.prepare("PRAGMA data_version").get() as { data_version: number }).data_version;
        await Promise.all(Array.from({ length: 20 }, (_, n) => store.put("event", `e${n}`, { n })));
        const after = (check.prepare("PRAGMA data_version").get() as { data_version: number }).data_version;
        assert.equal(after - before, 1, "20 writes of one turn are one commit");
      } finally {
        check.close();
      }
    } finally {
      controller.abort();
      await store.close();
    }
  });
});

test("sqlite: group commit: a transaction that cannot start fails every write of its group, none stored or watched", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.db");
    const store = SqliteStore.open(path, { busyTimeoutMs: 50 });
    const controller = new AbortController();
    const other = new DatabaseSync(path);
    try {
      const seen: number[] = [];
      const watching = (async () => {
        for await (const e of store.watch({ signal: controller.signal })) seen.push(e.revision);
      })().catch(() => {});
      // Another connection holds the write lock past the busy timeout.
      other.exec("BEGIN IMMEDIATE");
      const results = await Promise.allSettled([store.put("app", "t/a", {}), store.put("app", "t/b", {})]);
      other.exec("ROLLBACK");
      assert.deepEqual(
        results.map((r) => r.status),
        ["rejected", "rejected"],
      );
      assert.equal(await store.revision(), 0);
      assert.deepEqual((await store.list("app")).items, []);
      // The store goes on: the next group commits.
      assert.equal((await store.put("app", "t/c", {})).revision, 1);
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(seen, [1]);
      controller.abort();
      await watching;
    } finally {
      controller.abort();
      other.close();
      await store.close();
    }
  });
});
