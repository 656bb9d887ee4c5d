import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { TsdbReader } from "./reader.ts";
import { Tsdb } from "./tsdb.ts";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const MIN = 60_000;

test("a reader on the file sees what the writer acknowledged: new series, the head, across flushes and downsampling", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-tsdb-reader-"));
  let now = T0;
  const db = new Tsdb({ dir, now: () => now, rawRetentionMs: 60 * MIN });
  const reader = new TsdbReader(dir);
  t.after(() => {
    reader.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const up = { __name__: "up", job: "api" };
  const both = (id: number, from: number, to: number) => {
    reader.snapshot();
    const seen = reader.read(id, from, to);
    reader.release();
    assert.deepEqual(seen, db.read(id, from, to), "the reader reads what the writer reads");
    return seen;
  };
  db.append([{ labels: up, samples: [[T0, 1]] }]);
  reader.snapshot();
  const [ref] = reader.select([{ name: "job", op: "=", value: "api" }]);
  reader.release();
  assert.deepEqual(ref?.labels, up);
  const id = (ref as { id: number }).id;
  assert.deepEqual(both(id, T0 - MIN, T0 + MIN).values, [1]);
  // More head rows, then a flush (the head table emptied), then new rows with reused rowids.
  db.append([{ labels: up, samples: [[T0 + 15_000, 2]] }]);
  assert.deepEqual(both(id, T0 - MIN, T0 + MIN).values, [1, 2]);
  db.flushHead();
  db.append([{ labels: up, samples: [[T0 + 30_000, 3]] }]);
  db.append([{ labels: up, samples: [[T0 + 45_000, Number.NaN]] }]);
  assert.deepEqual(both(id, T0 - MIN, T0 + MIN).values, [1, 2, 3, Number.NaN]);
  db.flushHead();
  assert.deepEqual(both(id, T0 - MIN, T0 + MIN).values, [1, 2, 3, Number.NaN]);
  // A new series shows at the next snapshot.
  db.append([{ labels: { __name__: "up", job: "web" }, samples: [[T0 + 30_000, 7]] }]);
  reader.snapshot();
  assert.equal(reader.select([{ name: "__name__", op: "=", value: "up" }]).length, 2);
  reader.release();
  // Past the raw retention the writer downsamples and moves the edge; the reader follows it.
  for (let i = 4; i < 200; i++) {
    now = T0 + i * 15_000;
    db.append([{ labels: up, samples: [[now, i]] }]);
  }
  now = T0 + 3 * 3600_000;
  db.maintain();
  assert.ok(db.stats().rawFrom > T0, "downsampled");
  both(id, T0 - MIN, now);
});
