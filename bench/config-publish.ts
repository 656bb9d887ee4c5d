// bench:config's publish figure: config changes per second through the
// config center (src/config-center/center.ts) on a real SQLite store in a temp
// dir, each one a new version written, the app's head moved (CAS) and the
// change seen by one store watch on config_head (the one the agents' wait
// follows, src/api/node-waits.ts). Peer, in the same run: plain store puts of
// an object of the same size, the floor a change cannot beat.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigCenter } from "../src/config-center/center.ts";
import { SqliteStore } from "../src/store/sqlite-store.ts";

export interface PublishResult {
  /** Changes per second, each one stored, its head moved and seen by the watch. */
  perSecond: number;
  /** Plain puts per second on the same store. */
  putsPerSecond: number;
  /** Publish → watch event, p99 in ms. */
  watchP99: number;
}

export async function measurePublishes(seconds: number): Promise<PublishResult> {
  const dir = mkdtempSync(join(tmpdir(), "herd-bench-config-"));
  const store = SqliteStore.open(join(dir, "state.db"));
  const stop = new AbortController();
  try {
    const center = new ConfigCenter(store);
    const seen = new Map<number, number>();
    const watchLatency: number[] = [];
    const started = new Map<number, number>();
    const watching = (async () => {
      for await (const e of store.watch<{ stable: number }>({
        kinds: ["config_head"],
        signal: stop.signal,
      })) {
        const v = e.object.value.stable;
        const t = started.get(v);
        if (t !== undefined) watchLatency.push(performance.now() - t);
        seen.set(v, performance.now());
      }
    })().catch(() => {});
    let n = 0;
    const until = performance.now() + seconds * 1000;
    const t0 = performance.now();
    while (performance.now() < until) {
      started.set(n + 1, performance.now());
      await center.change({
        layer: "app",
        namespace: "bench/app",
        author: "bench",
        set: { GREETING: `hello ${n}`, POOL: String(n % 16) },
        files: { "app.yaml": { format: "yaml", content: `version: ${n}\nfeature: on\n` } },
      });
      n++;
    }
    const perSecond = n / ((performance.now() - t0) / 1000);
    // Let the watch catch up before it is counted.
    for (let i = 0; i < 50 && !seen.has(n); i++) await new Promise((res) => setTimeout(res, 20));
    if (!seen.has(n)) throw new Error(`the watch saw ${seen.size} of ${n} changes`);

    const value = (await center.version("app", "bench/app", 1)) as object;
    let puts = 0;
    const p0 = performance.now();
    const putsUntil = p0 + seconds * 1000;
    while (performance.now() < putsUntil) {
      await store.put("config_version", `app/bench/peer/${String(puts).padStart(8, "0")}`, value, {
        expectRevision: 0,
      });
      puts++;
    }
    const putsPerSecond = puts / ((performance.now() - p0) / 1000);
    stop.abort();
    await watching;
    watchLatency.sort((a, b) => a - b);
    const watchP99 =
      watchLatency[Math.min(watchLatency.length - 1, Math.ceil(0.99 * watchLatency.length) - 1)] ?? 0;
    return { perSecond, putsPerSecond, watchP99 };
  } finally {
    stop.abort();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
