import assert from "node:assert/strict";
import { test } from "node:test";
import { WebhookNotifier } from "./notifier.ts";

test("the outbox is bounded: past maxQueue the oldest delivery is dropped and counted", () => {
  const n = new WebhookNotifier({ maxQueue: 2 });
  n.stop(); // nothing is sent: only the queue is looked at
  const r = { key: "default/ops", url: "http://127.0.0.1:1/hook" };
  for (const i of [1, 2, 3]) n.enqueue(r, { i });
  assert.deepEqual(
    n.pending().map((d) => d.body),
    [{ i: 2 }, { i: 3 }],
  );
  const s = n.status("default/ops");
  assert.equal(s.dropped, 1);
  assert.equal(s.queued, 2);
  assert.match(s.lastError ?? "", /outbox is full/);
  n.forget("default/ops");
  assert.equal(n.pending().length, 0);
});
