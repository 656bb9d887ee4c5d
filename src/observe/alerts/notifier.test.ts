import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { UrlGuard } from "../../common/url-guard.ts";
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

test("a receiver on loopback is refused, not retried, unless allowed", async (t) => {
  let posts = 0;
  const server = createServer((_req, res) => {
    posts++;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise((r) => server.close(r)));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const refusing = new WebhookNotifier({ tickMs: 5, backoffMs: 5, maxAttempts: 3 });
  refusing.start();
  refusing.enqueue({ key: "default/ops", url }, { alert: 1 });
  await refusing.drained(5000);
  refusing.stop();
  const s = refusing.status("default/ops");
  assert.equal(posts, 0, "nothing was posted");
  assert.equal(s.failedAttempts, 1, "a refusal is not retried");
  assert.equal(s.dropped, 1);
  assert.match(s.lastError ?? "", /127\.0\.0\.1 is a loopback address.*--allow-fetch.*given up/);

  const allowing = new WebhookNotifier({ tickMs: 5, guard: new UrlGuard({ allow: ["127.0.0.0/8"] }) });
  allowing.start();
  allowing.enqueue({ key: "default/ops", url }, { alert: 2 });
  await allowing.drained(5000);
  allowing.stop();
  assert.equal(posts, 1);
  assert.equal(allowing.status("default/ops").delivered, 1);
});
