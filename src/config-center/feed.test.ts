import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { EffectiveConfig } from "../model/config.ts";
import { ConfigFeed } from "./feed.ts";
import { feedKey, writeInstanceConfig } from "./instance-files.ts";

const doc = (version: number, value: string): EffectiveConfig => ({
  tenant: "t",
  app: "a",
  version,
  values: { K: value },
  files: { "app.yaml": { format: "yaml", content: `k: ${value}\n` } },
  origins: { K: `app v${version}`, "app.yaml": `app v${version}` },
});

async function withFeed(fn: (url: string, feed: ConfigFeed) => Promise<void>): Promise<void> {
  const feed = new ConfigFeed({ authorize: (id, key) => key === feedKey("s", id), heartbeatMs: 50 });
  const { url } = await feed.listen(0);
  try {
    await fn(url, feed);
  } finally {
    await feed.close();
  }
}

test("long poll: the current version at once, then held until the next publish, 304 after the hold", async () => {
  await withFeed(async (url, feed) => {
    feed.publish("i1", doc(1, "a"));
    const base = `${url}/config/i1?key=${feedKey("s", "i1")}`;
    const now = await fetch(base);
    assert.equal(now.status, 200);
    assert.equal(((await now.json()) as EffectiveConfig).values.K, "a");
    const held = fetch(`${base}&since=1`);
    await new Promise((r) => setTimeout(r, 50));
    feed.publish("i1", doc(2, "b"));
    const next = await held;
    assert.equal(next.headers.get("etag"), '"2"');
    assert.equal(((await next.json()) as EffectiveConfig).values.K, "b");
    assert.equal((await fetch(`${base}&since=2&timeoutMs=0`)).status, 304);
    const idle = await fetch(`${base}&since=2&timeoutMs=30`);
    assert.equal(idle.status, 304);
    assert.equal((await fetch(`${url}/config/i1?key=wrong`)).status, 403);
    assert.equal((await fetch(`${url}/config/i2?key=${feedKey("s", "i2")}`)).status, 404);
    assert.equal((await fetch(`${base}&since=x`)).status, 400);
  });
});

test("SSE: the version newer than Last-Event-ID, then every publish, with heartbeats", async () => {
  await withFeed(async (url, feed) => {
    feed.publish("i1", doc(1, "a"));
    const res = await fetch(`${url}/config/i1?key=${feedKey("s", "i1")}`, {
      headers: { accept: "text/event-stream", "last-event-id": "1" },
    });
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    const until = async (pred: (t: string) => boolean) => {
      while (!pred(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended: ${text}`);
        text += decoder.decode(value);
      }
    };
    await until((t) => t.includes(": waiting"));
    assert.doesNotMatch(text, /id: 1/);
    feed.publish("i1", doc(2, "b"));
    await until((t) => t.includes("id: 2\nevent: config\n"));
    await until((t) => t.includes(": beat"));
    await reader.cancel();
  });
});

test("instance files: written whole, config.json last, stale files removed", async () => {
  const dir = await mkdtemp(join(tmpdir(), "herd-config-files-"));
  try {
    await writeInstanceConfig(dir, doc(1, "a"));
    const summary = JSON.parse(await readFile(join(dir, "config.json"), "utf8"));
    assert.equal(summary.version, 1);
    assert.deepEqual(summary.files, { "app.yaml": "yaml" });
    assert.equal(await readFile(join(dir, "files", "app.yaml"), "utf8"), "k: a\n");
    await writeInstanceConfig(dir, { ...doc(2, "b"), files: {} });
    assert.deepEqual(await readdir(join(dir, "files")), []);
    assert.deepEqual(await readdir(dir), ["config.json", "files"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a version going back (a gray release rolled back) reaches followers too", async () => {
  await withFeed(async (url, feed) => {
    feed.publish("i1", doc(2, "gray"));
    const base = `${url}/config/i1?key=${feedKey("s", "i1")}`;
    const held = fetch(`${base}&since=2`);
    await new Promise((r) => setTimeout(r, 30));
    feed.publish("i1", doc(1, "stable"));
    const back = await held;
    assert.equal(((await back.json()) as EffectiveConfig).values.K, "stable");
  });
});

test("copies of one version (one per instance, as an agent has them) are served alike; following counts held polls and streams", async () => {
  await withFeed(async (url, feed) => {
    feed.publish("i1", doc(1, "a"));
    feed.publish("i2", doc(1, "a"));
    assert.equal(feed.following(), 0);
    const held = [1, 2].map((i) => fetch(`${url}/config/i${i}?key=${feedKey("s", `i${i}`)}&since=1`));
    for (let i = 0; i < 50 && feed.following() < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(feed.following(), 2);
    // Two distinct objects of version 2 (parsed from a heartbeat reply each).
    feed.publish("i1", JSON.parse(JSON.stringify(doc(2, "b"))) as EffectiveConfig);
    feed.publish("i2", JSON.parse(JSON.stringify(doc(2, "b"))) as EffectiveConfig);
    const bodies = await Promise.all(held.map(async (r) => (await r).text()));
    assert.equal(bodies[0], bodies[1]);
    assert.equal((JSON.parse(bodies[0] as string) as EffectiveConfig).values.K, "b");
    assert.equal(feed.following(), 0);
  });
});

test("a held long poll whose client leaves is no longer counted, and a publish after it is harmless", async () => {
  await withFeed(async (url, feed) => {
    feed.publish("i1", doc(1, "a"));
    const gone = new AbortController();
    const held = fetch(`${url}/config/i1?key=${feedKey("s", "i1")}&since=1`, { signal: gone.signal });
    for (let i = 0; i < 50 && feed.following() < 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(feed.following(), 1);
    gone.abort();
    await assert.rejects(held);
    for (let i = 0; i < 50 && feed.following() > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(feed.following(), 0);
    feed.publish("i1", doc(2, "b"));
    const now = await fetch(`${url}/config/i1?key=${feedKey("s", "i1")}&since=1`);
    assert.equal(now.headers.get("content-length"), String(Buffer.byteLength(await now.text())));
  });
});
