// The previews controller checked as data: a memory store and a manual clock.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type App, appKey } from "../model/objects.ts";
import { type Preview, previewKey } from "../model/pipeline.ts";
import { PreviewReaper } from "./environments.ts";
import { testContext } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-previews-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("a preview's app is destroyed once its stored deadline passes, and its record goes with the app", async () => {
  const { ctx, store, clock } = testContext(dir);
  const now = clock.now();
  const app: App = { tenant: "t", name: "shop-pr1", createdAt: "", release: 1, latestVersion: 1 };
  await store.put("app", appKey("t", "shop-pr1"), app);
  const pv: Preview = {
    tenant: "t",
    app: "shop-pr1",
    of: "shop",
    name: "pr1",
    createdAt: new Date(now).toISOString(),
    expiresAt: new Date(now + 60_000).toISOString(),
  };
  await store.put("preview", previewKey("t", "shop-pr1"), pv);
  // A second reaper stands for a restarted control plane: only the stored deadline counts.
  await new PreviewReaper(ctx).sweep();
  assert.equal((await store.get<App>("app", appKey("t", "shop-pr1")))?.value.destroying, undefined);
  clock.advance(59_999);
  await new PreviewReaper(ctx).sweep();
  assert.equal((await store.get<App>("app", appKey("t", "shop-pr1")))?.value.destroying, undefined);
  clock.advance(1);
  await new PreviewReaper(ctx).sweep();
  assert.equal((await store.get<App>("app", appKey("t", "shop-pr1")))?.value.destroying, true);
  const events = (await store.list<{ reason: string }>("event")).items.map((e) => e.value.reason);
  assert.deepEqual(
    events.filter((r) => r === "PreviewExpired"),
    ["PreviewExpired"],
  );
  // Sweeping again while the app is taken apart does nothing more.
  await new PreviewReaper(ctx).sweep();
  assert.equal(
    (await store.list<{ reason: string }>("event")).items.filter((e) => e.value.reason === "PreviewExpired")
      .length,
    1,
  );
  assert.ok(await store.get("preview", previewKey("t", "shop-pr1")));
  // The app controller deleted the app: the record goes.
  await store.delete("app", appKey("t", "shop-pr1"));
  await new PreviewReaper(ctx).sweep();
  assert.equal(await store.get("preview", previewKey("t", "shop-pr1")), undefined);
});

test("a preview record whose app is not created yet is kept for a minute, then taken for a leftover", async () => {
  const { ctx, store, clock } = testContext(dir);
  const now = clock.now();
  const pv: Preview = {
    tenant: "t",
    app: "shop-pr2",
    of: "shop",
    name: "pr2",
    createdAt: new Date(now).toISOString(),
    expiresAt: new Date(now + 3600_000).toISOString(),
  };
  await store.put("preview", previewKey("t", "shop-pr2"), pv);
  await new PreviewReaper(ctx).sweep();
  assert.ok(await store.get("preview", previewKey("t", "shop-pr2")), "kept while its app is being created");
  clock.advance(60_001);
  await new PreviewReaper(ctx).sweep();
  assert.equal(await store.get("preview", previewKey("t", "shop-pr2")), undefined);
});
