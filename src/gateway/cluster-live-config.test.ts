// A real `herd gateway --workers 2` (as `herd up` runs it) against the real
// control plane: it reports for the gateway as a whole, a version counting as
// applied once both workers ACKed it, and a refused configuration as a NACK.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { GatewayStatus } from "../model/live-config.ts";
import { type GatewayChild, spawnGatewayChild } from "./cluster-child.ts";
import { request, seedShop, startUpstream, type TestUpstream } from "./testing.ts";

describe("gateway cluster reports to the control plane", () => {
  let dir: string;
  let server: RunningServer;
  let upstream: TestUpstream;
  let gateway: GatewayChild | undefined;

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.url}/api/v1${path}`, {
      method,
      headers: {
        authorization: `Bearer ${server.adminToken}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  const mine = async (): Promise<GatewayStatus | undefined> =>
    (await api("GET", "/gateways")).items.find(
      (g: GatewayStatus) => g.id === `${hostname()}:${gateway?.port}`,
    );
  const until = async (what: string, check: (g: GatewayStatus | undefined) => boolean) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const g = await mine();
      if (check(g)) return g;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(g)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "herd-cluster-live-"));
    upstream = await startUpstream((_req, res) => res.end("ok"));
    server = await startServer({
      dataDir: join(dir, "server"),
      port: 0,
      logger: silentLogger,
      settings: { nodeLostMs: 3_600_000, nodeNotReadyMs: 3_600_000 },
    });
    await seedShop(server.store, upstream.port);
    gateway = await spawnGatewayChild({
      server: server.url,
      token: server.adminToken,
      port: 0,
      host: "127.0.0.1",
      dataDir: join(dir, "gateway"),
      workers: 2,
    });
  });

  after(async () => {
    await gateway?.stop(3000);
    await server?.close();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("ACK once both workers serve a new route; NACK with the reason for a refused one", async () => {
    const route = await api("PUT", "/apps/shop/routes/beta", { service: "web", host: "beta.test" });
    const acked = await until("the ACK", (g) => g !== undefined && g.version >= route.revision && g.inSync);
    assert.equal(acked?.workers, 2);
    assert.equal(acked?.routes, 2);
    // New connections land on either worker: every one of them serves the route.
    for (let i = 0; i < 10; i++) assert.equal((await request(gateway!.port, "beta.test", "/")).status, 200);

    const bad = await server.store.put("route", "default/shop/broken", {
      tenant: "default",
      app: "shop",
      name: "broken",
      spec: { service: "web", host: 42 },
      createdAt: "",
      updatedAt: "",
    });
    const nacked = await until("the NACK", (g) => g?.rejectedVersion === bad.revision);
    assert.match(nacked?.error ?? "", /route default\/shop\/broken: host/);
    assert.equal(nacked?.inSync, false);
    assert.ok((nacked?.version ?? 0) >= route.revision);
    assert.equal((await request(gateway!.port, "beta.test", "/")).status, 200);

    await server.store.delete("route", "default/shop/broken");
    await until("back in sync", (g) => g?.inSync === true && g.error === undefined);
  });
});
