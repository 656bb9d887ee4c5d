import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { ConfigSource } from "./config-source.ts";
import type { RouteTable } from "./route-table.ts";
import {
  startTestControlPlane,
  type TestControlPlane,
  testInstance,
  testNode,
  testService,
  waitFor,
} from "./testing.ts";

const TOKEN = "secret-token";
const WEB = { app: "shop", service: "web" };

describe("config source", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-config-source-"));
    controlPlane = await startTestControlPlane(TOKEN);
    controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
    controlPlane.put(
      "service",
      "default/shop/web",
      testService("default", "shop", "web", [{ host: "shop.test" }]),
    );
  });

  after(async () => {
    await controlPlane.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("coalesces a burst, and resumes the watch from the last revision after a disconnect", async () => {
    const tables: RouteTable[] = [];
    const source = new ConfigSource({
      server: controlPlane.url,
      token: TOKEN,
      dataDir,
      logger: silentLogger,
      onTable: (table) => tables.push(table),
      rebuildIntervalMs: 50,
      backoffMs: { first: 10, max: 50 },
    });
    try {
      await source.start();
      assert.equal(tables.length, 1);
      assert.equal(tables[0].version, controlPlane.revision());

      let last = 0;
      for (let i = 0; i < 100; i++)
        last = controlPlane.put("instance", `i${i}`, testInstance(`i${i}`, WEB, "local", 5000 + i));
      await waitFor(() => tables.at(-1)!.version === last, 2000, "the burst");
      assert.ok(tables.length <= 4, `${tables.length} tables for one burst`);
      assert.equal(tables.at(-1)!.match("shop.test", "/")?.endpoints.length, 100);

      const snapshots = controlPlane.snapshots();
      controlPlane.dropWatches();
      const revision = controlPlane.delete("instance", "i0");
      await waitFor(() => tables.at(-1)!.version === revision, 2000, "the event after the reconnect");
      assert.equal(tables.at(-1)!.match("shop.test", "/")?.endpoints.length, 99);
      assert.equal(controlPlane.snapshots(), snapshots, "a plain disconnect needs no new snapshot");
    } finally {
      await source.close();
    }
  });

  test("a wrong token leaves the table empty and keeps trying", async () => {
    const tables: RouteTable[] = [];
    const source = new ConfigSource({
      server: controlPlane.url,
      token: "wrong",
      dataDir: join(dataDir, "other"),
      logger: silentLogger,
      onTable: (table) => tables.push(table),
      backoffMs: { first: 10, max: 20 },
    });
    try {
      await source.start();
      assert.equal(tables.length, 0);
      assert.equal(await source.loadCache(), false);
    } finally {
      await source.close();
    }
  });
});
