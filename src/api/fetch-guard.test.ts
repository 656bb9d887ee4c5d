// The URL guard as a server started without --allow-fetch has it: a registered
// scrape target and an alert receiver on 127.0.0.1 are refused with a clear
// reason and never asked, while herd's own /metrics (a target it found itself)
// is still scraped on loopback.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
let local: Server;
let asked = 0;
const dir = mkdtempSync(join(tmpdir(), "herd-fetch-guard-"));

before(async () => {
  server = await startServer({
    dataDir: dir,
    port: 0,
    logger: silentLogger,
    metrics: { scrapeIntervalMs: 200 },
  });
  local = createServer((_req, res) => {
    asked++;
    res.end("x_total 1\n");
  });
  await new Promise<void>((r) => local.listen(0, "127.0.0.1", r));
});

after(async () => {
  await server.close();
  await new Promise((r) => local.close(r));
  rmSync(dir, { recursive: true, force: true });
});

interface TargetHealth {
  name: string;
  health: string;
  lastError: string | null;
}

async function targets(): Promise<TargetHealth[]> {
  return (await apiCall(server, "GET", "/metrics/targets")).body.items as TargetHealth[];
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a registered scrape target on loopback is refused; herd's own is scraped", async () => {
  const url = `http://127.0.0.1:${(local.address() as AddressInfo).port}/metrics`;
  assert.equal((await apiCall(server, "PUT", "/metrics/targets/inside", { url })).status, 200);
  const inside = await until("the target's first scrape", async () =>
    (await targets()).find((t) => t.name === "inside" && t.health !== "unknown"),
  );
  assert.equal(inside.health, "down");
  assert.match(inside.lastError ?? "", /127\.0\.0\.1 is a loopback address.*--allow-fetch/);
  const own = await until("herd's own scrape", async () =>
    (await targets()).find((t) => t.name === "herd-api" && t.health === "up"),
  );
  assert.equal(own.lastError, null);
  assert.equal(asked, 0, "the loopback target was never asked");
});

test("an alert receiver on loopback is refused and given up at once", async () => {
  const url = `http://127.0.0.1:${(local.address() as AddressInfo).port}/hook`;
  const notifier = server.alerts.notifier;
  notifier.enqueue({ key: "default/inside", url }, { alerts: [] });
  await notifier.drained(5000);
  const status = notifier.status("default/inside");
  assert.equal(status.delivered, 0);
  assert.equal(status.dropped, 1);
  assert.match(status.lastError ?? "", /127\.0\.0\.1 is a loopback address.*given up/);
  assert.equal(asked, 0);
});
