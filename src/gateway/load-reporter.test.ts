// A gateway's live load reports reaching a (stand-in) control plane: every
// interval while there is traffic, one empty report after it, then silence;
// with worker processes, each worker reports under its own id.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import type { LoadReport } from "../model/load.ts";
import { type GatewayChild, spawnGatewayChild } from "./cluster-child.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import { LoadBook } from "./load-recorder.ts";
import { LoadReporter } from "./load-reporter.ts";
import {
  childPids,
  closedPort,
  killAll,
  putShop,
  request,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  waitFor,
} from "./testing.ts";

const TOKEN = "load-token";
const KEY = "default/shop/web";

let dir: string;
let controlPlane: TestControlPlane;
let upstream: TestUpstream;
const pids = new Set<number>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "herd-load-reporter-"));
  controlPlane = await startTestControlPlane(TOKEN);
  upstream = await startUpstream((_req, res) => res.end("ok"));
  putShop(controlPlane, upstream.port);
});
after(async () => {
  killAll(pids);
  await controlPlane.close();
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

/** Requests for `KEY` in every report of the reporters whose id passes `which`. */
function reported(which: (id: string) => boolean): number {
  let n = 0;
  for (const [id, list] of controlPlane.loads()) {
    if (!which(id)) continue;
    for (const r of list) for (const s of r.services) if (s.service === KEY) n += s.requests;
  }
  return n;
}

test("a gateway reports each interval while there is traffic, once empty after it, then nothing", async () => {
  let gateway: Gateway | undefined;
  try {
    gateway = await startGateway({
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir: join(dir, "single"),
      logger: silentLogger,
      id: "gw-single",
      loadIntervalMs: 200,
    });
    const port = gateway.port;
    await waitFor(() => gateway?.table().backends.has(KEY) === true, 5000, "the table");
    const started = Date.now();
    for (let i = 0; i < 12; i++) assert.equal((await request(port, "shop.test", "/")).status, 200);
    await waitFor(() => reported((id) => id === "gw-single") === 12, 3000, "12 requests reported");
    const list = controlPlane.loads().get("gw-single") as LoadReport[];
    const busy = list.find((r) => r.services.length > 0) as LoadReport;
    assert.ok(
      busy.at >= started - 1000 && busy.intervalMs > 0 && busy.intervalMs < 2000,
      JSON.stringify(busy),
    );
    const web = busy.services[0];
    assert.equal(web.instances[0]?.instance, "ia");
    assert.equal(web.instances[0]?.release, 1);
    // Quiet: one empty report says the traffic ended, then the gateway says nothing.
    await new Promise((resolve) => setTimeout(resolve, 700));
    const settled = list.length;
    assert.deepEqual(list.at(-1)?.services, [], "the last report is empty");
    assert.ok(
      list.filter((r) => r.services.length === 0).length <= 1,
      "one empty report, not one per interval",
    );
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(list.length, settled, "no report while nothing happens");
  } finally {
    await gateway?.close();
  }
});

test("with worker processes each worker reports under its own id, and the counts add up", async () => {
  let gateway: GatewayChild | undefined;
  gateway = await spawnGatewayChild({
    server: controlPlane.url,
    token: TOKEN,
    port: 0,
    host: "127.0.0.1",
    dataDir: join(dir, "cluster"),
    workers: 2,
    metricsPort: "off",
  });
  pids.add(gateway.pid);
  for (const pid of childPids(gateway.pid)) pids.add(pid);
  const port = gateway.port;
  const before = reported(() => true);
  // Separate connections, so both workers get some.
  for (let i = 0; i < 30; i++) assert.equal((await request(port, "shop.test", "/")).status, 200);
  const workers = (id: string) => /\.w[01]$/.test(id);
  await waitFor(
    () => reported(workers) === 30 && before === reported((id) => !workers(id)),
    5000,
    "30 reported",
  );
  const ids = [...controlPlane.loads().keys()].filter(workers);
  assert.ok(
    ids.length >= 1 && ids.every((id) => id.endsWith(`:${port}.w0`) || id.endsWith(`:${port}.w1`)),
    ids.join(),
  );
  await gateway.stop();
  gateway = undefined;
});

test("with the control plane away a report is dropped, and the next interval is tried again", async () => {
  const book = new LoadBook();
  const web = book.service(KEY);
  const reporter = new LoadReporter({
    server: `http://127.0.0.1:${await closedPort()}`,
    token: TOKEN,
    id: "gw-away",
    logger: silentLogger,
    book: () => book,
  });
  web.inflight = 1;
  reporter.tick();
  await waitFor(() => reporter.dropped === 1, 3000, "a dropped report");
  // The traffic ended: the empty interval that says so is sent (and dropped) too; the one after is not.
  web.inflight = 0;
  reporter.tick();
  await waitFor(() => reporter.dropped === 2, 3000, "a second dropped report");
  reporter.tick();
  await new Promise((resolve) => setTimeout(resolve, 50));
  await reporter.close();
  assert.equal(reporter.sent, 0);
  assert.equal(reporter.dropped, 2, "an empty interval after an empty one is not sent");
});
