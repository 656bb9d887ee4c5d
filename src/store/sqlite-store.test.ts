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

test("sqlite: every acknowledged write survives SIGKILL of the writing process", {
  timeout: 60_000,
}, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "store.db");
    const script = join(dir, "writer.mjs");
    // The writer prints a key only after its put resolved, i.e. after COMMIT.
    await writeFile(
      script,
      `import { SqliteStore } from ${JSON.stringify(new URL("./sqlite-store.ts", import.meta.url).href)};
const store = SqliteStore.open(process.argv[2]);
for (let n = 0; n < 100000; n++) {
  const key = "e" + String(n).padStart(6, "0");
  await store.put("event", key, { n, padding: "x".repeat(500) });
  process.stdout.write(key + "\\n");
}
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
        assert.equal((await store.put("event", "after", {})).revision, revision + 1);
      } finally {
        await store.close();
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
