import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { IngestBusyError, IngestQueue } from "./ingest.ts";
import { Tsdb } from "./tsdb/tsdb.ts";

test("the ingest queue refuses a write while full (retry later) and one bigger than itself (never fits)", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "herd-ingest-"));
  const tsdb = new Tsdb({ dir });
  t.after(() => {
    tsdb.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const queue = new IngestQueue(tsdb, 10);
  const now = Date.now();
  const write = (n: number, from = 0) => [
    {
      metric: "q",
      labels: {},
      samples: Array.from({ length: n }, (_, i): [number, number] => [now + from + i, i]),
    },
  ];
  const first = queue.submit(write(6));
  // Still waiting for its turn: 6 + 6 > 10.
  await assert.rejects(
    queue.submit(write(6, 100)),
    (e: unknown) => e instanceof IngestBusyError && !e.tooLarge && /queue full/.test(e.message),
  );
  await assert.rejects(
    queue.submit(write(11, 200)),
    (e: unknown) => e instanceof IngestBusyError && e.tooLarge && /split it/.test(e.message),
  );
  assert.equal((await first).accepted, 6);
  assert.equal((await queue.submit(write(6, 300))).accepted, 6);
});
