import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Tsdb } from "./tsdb.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const MIN = 60_000;

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "herd-tsdb-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("samples survive a head flush and a reopen; out-of-order and too-old samples are dropped", (t) => {
  const dir = tempDir(t);
  let now = T0;
  const db = new Tsdb({ dir, now: () => now });
  const labels = { __name__: "up", job: "api", empty: "" };
  const r = db.append([
    {
      labels,
      samples: [
        [T0 - 1000, 1],
        [T0, 2],
        [T0, 3],
        [T0 - 5000, 4],
        [T0 - 2 * 86_400_000, 5],
      ],
    },
  ]);
  assert.deepEqual(r, { accepted: 2, outOfOrder: 2, tooOld: 1 });
  db.flushHead();
  now += 15_000;
  db.append([{ labels: { job: "api", __name__: "up" }, samples: [[T0 + 15_000, 6]] }]);
  db.append([{ labels: { __name__: "nan" }, samples: [[T0, Number.NaN]] }]);
  assert.deepEqual(
    db.read(db.select([{ name: "__name__", op: "=", value: "up" }])[0]?.id as number, T0 - MIN, T0 + MIN),
    {
      ts: [T0 - 1000, T0, T0 + 15_000],
      values: [1, 2, 6],
    },
  );
  db.close();
  // The head (written after the flush) is replayed from its table.
  const again = new Tsdb({ dir, now: () => now });
  const [s] = again.select([{ name: "job", op: "=~", value: "a.i" }]);
  assert.deepEqual(s?.labels, { __name__: "up", job: "api" });
  assert.deepEqual(again.read(s?.id as number, T0 - MIN, T0 + MIN).values, [1, 2, 6]);
  assert.equal(again.append([{ labels, samples: [[T0 + 15_000, 7]] }]).outOfOrder, 1);
  assert.deepEqual(again.labelValues("job"), ["api"]);
  const nan = again.select([{ name: "__name__", op: "=", value: "nan" }])[0]?.id as number;
  assert.ok(Number.isNaN(again.read(nan, T0, T0).values[0]), "NaN survives the head table");
  again.close();
});

test("raw data past retention becomes 1-minute aggregates, and those expire too", (t) => {
  const dir = tempDir(t);
  let now = T0;
  const db = new Tsdb({ dir, now: () => now, rawRetentionMs: 10 * MIN, downsampledRetentionMs: 60 * MIN });
  const samples: [number, number][] = [];
  for (let i = 0; i < 20 * 4; i++) samples.push([T0 + i * 15_000, i]);
  now = T0 + 20 * MIN;
  // Written as they arrive: the clock follows the samples.
  for (const s of samples) {
    now = s[0];
    db.append([{ labels: { __name__: "c" }, samples: [s] }]);
  }
  now = T0 + 20 * MIN;
  db.maintain();
  const id = db.select([{ name: "__name__", op: "=", value: "c" }])[0]?.id as number;
  const got = db.read(id, T0, now);
  // Minutes 0..9 are aggregates (last value of each minute at the minute's start), then raw samples.
  assert.deepEqual(got.ts.slice(0, 3), [T0, T0 + MIN, T0 + 2 * MIN]);
  assert.deepEqual(got.values.slice(0, 3), [3, 7, 11]);
  assert.equal(got.ts[10], T0 + 10 * MIN);
  assert.equal(got.ts.length, 10 + 40);
  assert.equal(db.stats().downsampledRows, 10);
  now = T0 + 65 * MIN;
  db.maintain();
  // Aggregates older than an hour are gone; raw older than 10 minutes has become aggregates.
  const later = db.read(id, T0, now);
  assert.equal(later.ts[0], T0 + 5 * MIN);
  db.close();
});

test("the size limit drops the oldest data first and keeps the file under the limit", (t) => {
  const dir = tempDir(t);
  let now = T0;
  const maxBytes = 1024 * 1024;
  const db = new Tsdb({ dir, now: () => now, maxBytes, rawRetentionMs: 7 * 86_400_000 });
  for (let h = 0; h < 30; h++) {
    const batch = [];
    for (let s = 0; s < 25; s++) {
      const samples: [number, number][] = [];
      for (let i = 0; i < 240; i++) samples.push([T0 + h * 3600_000 + i * 15_000, i]);
      batch.push({ labels: { __name__: "m", s: String(s) }, samples });
    }
    now = T0 + (h + 1) * 3600_000;
    db.append(batch);
    db.flushHead();
    db.maintain();
    assert.ok(db.usedBytes() <= maxBytes, `hour ${h}: ${db.usedBytes()} bytes`);
  }
  const id = db.select([{ name: "s", op: "=", value: "0" }])[0]?.id as number;
  const kept = db.read(id, T0, now);
  assert.ok(kept.ts.length > 0 && kept.ts.length < 30 * 240, `${kept.ts.length}`);
  assert.equal(kept.ts[kept.ts.length - 1], T0 + 29 * 3600_000 + 239 * 15_000, "the newest data is kept");
  assert.ok((kept.ts[0] as number) > T0, "the oldest data went");
  db.close();
});

test("kill -9 loses no acknowledged write", async (t) => {
  const dir = tempDir(t);
  const script = join(dir, "writer.ts");
  writeFileSync(
    script,
    `import { Tsdb } from ${JSON.stringify(join(import.meta.dirname, "tsdb.ts"))};
const db = new Tsdb({ dir: ${JSON.stringify(join(dir, "db"))}, headMaxSamples: 500 });
let i = 0;
for (;;) {
  const ts = Date.now() + i;
  db.append([{ labels: { __name__: "acked" }, samples: [[ts, i]] }]);
  process.stdout.write(i + "\\n");
  i++;
  if (i % 50 === 0) await new Promise((r) => setTimeout(r, 1));
}
`,
  );
  const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
  t.after(() => child.kill("SIGKILL"));
  let out = "";
  await new Promise<void>((resolve) => {
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.split("\n").length > 2000) {
        child.kill("SIGKILL");
        resolve();
      }
    });
  });
  await new Promise((r) => child.once("exit", r));
  const acked = out
    .split("\n")
    .filter((l) => /^\d+$/.test(l))
    .map(Number);
  const db = new Tsdb({ dir: join(dir, "db") });
  const id = db.select([{ name: "__name__", op: "=", value: "acked" }])[0]?.id as number;
  const values = db.read(id, 0, Date.now() + 1e9).values;
  db.close();
  const last = acked[acked.length - 1] as number;
  assert.ok(values.length >= last + 1, `${values.length} samples stored, ${last + 1} acknowledged`);
  assert.deepEqual(values.slice(0, last + 1), acked);
});

test("compaction merges the chunks of a finished hour into one, data unchanged", (t) => {
  const dir = tempDir(t);
  let now = T0;
  const db = new Tsdb({ dir, now: () => now });
  const labels = { __name__: "g" };
  // Three head flushes within the first hour, one in the second.
  for (const minute of [0, 20, 40, 70]) {
    now = T0 + minute * MIN;
    db.append([
      {
        labels,
        samples: [
          [now, minute],
          [now + 15_000, minute + 0.5],
        ],
      },
    ]);
    db.flushHead();
  }
  assert.equal(db.stats().chunks, 4);
  db.maintain();
  assert.equal(db.stats().chunks, 2, "hour 0 merged, hour 1 still open");
  const id = db.select([{ name: "__name__", op: "=", value: "g" }])[0]?.id as number;
  assert.deepEqual(db.read(id, T0, T0 + 2 * 3600_000).values, [0, 0.5, 20, 20.5, 40, 40.5, 70, 70.5]);
  assert.deepEqual(db.read(id, T0 + 20 * MIN, T0 + 40 * MIN).values, [20, 20.5, 40]);
  db.close();
});

test("a failed append leaves nothing behind: no samples, no half-made series", (t) => {
  const dir = tempDir(t);
  const db = new Tsdb({ dir, now: () => T0 });
  db.append([{ labels: { __name__: "old" }, samples: [[T0 - 1000, 1]] }]);
  // The second sample cannot be bound: the whole transaction rolls back.
  const bad = { __name__: "bad" };
  assert.throws(() =>
    db.append([
      { labels: { __name__: "fresh" }, samples: [[T0, 1]] },
      { labels: bad, samples: [[{} as unknown as number, 2]] },
    ]),
  );
  assert.deepEqual(db.select([{ name: "__name__", op: "=~", value: "fresh|bad" }]), []);
  db.append([
    { labels: { __name__: "fresh" }, samples: [[T0, 5]] },
    { labels: { __name__: "old" }, samples: [[T0, 2]] },
  ]);
  const fresh = db.select([{ name: "__name__", op: "=", value: "fresh" }]);
  assert.equal(fresh.length, 1);
  assert.deepEqual(db.read(fresh[0]?.id as number, 0, T0).values, [5]);
  const old = db.select([{ name: "__name__", op: "=", value: "old" }])[0]?.id as number;
  assert.deepEqual(db.read(old, 0, T0).values, [1, 2]);
  db.close();
});
