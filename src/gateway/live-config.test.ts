// Live configuration end to end: the real control plane (API, store,
// snapshot + watch, gateway reports) and a real gateway. Routes added,
// changed and deleted through the API take effect without a restart; the
// gateway ACKs each version; an invalid object written around the API is
// refused (NACK) while the old table keeps serving; and swapping tables
// under load drops no request.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { GatewayStatus } from "../model/live-config.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import { request, seedShop, startUpstream, type TestUpstream } from "./testing.ts";

const GATEWAY_ID = "gw-live";

describe("live configuration through the API", () => {
  let dir: string;
  let server: RunningServer;
  let upstream: TestUpstream;
  let gateway: Gateway;

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
    const parsed = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return parsed;
  };
  const status = async (): Promise<{ configVersion: number; mine?: GatewayStatus }> => {
    const body = await api("GET", "/gateways");
    return {
      configVersion: body.configVersion,
      mine: body.items.find((g: GatewayStatus) => g.id === GATEWAY_ID),
    };
  };
  /** Polls until the gateway reports it serves `version` (or later) and is in sync. */
  const untilApplied = async (version: number) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const s = await status();
      if (s.mine && s.mine.version >= version && s.mine.inSync) return s;
      if (Date.now() > deadline) throw new Error(`gateway never reported ${version}: ${JSON.stringify(s)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const get = (host: string, path = "/") => request(gateway.port, host, path);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "herd-live-config-"));
    upstream = await startUpstream((req, res) => res.end(`ok ${req.url}`));
    // No agent here: the node never heartbeats, so it must not be declared lost during the test.
    server = await startServer({
      dataDir: join(dir, "server"),
      port: 0,
      logger: silentLogger,
      settings: { nodeLostMs: 3_600_000, nodeNotReadyMs: 3_600_000 },
    });
    await seedShop(server.store, upstream.port);
    gateway = await startGateway({
      server: server.url,
      token: server.adminToken,
      port: 0,
      host: "127.0.0.1",
      dataDir: join(dir, "gateway"),
      logger: silentLogger,
      id: GATEWAY_ID,
      statusIntervalMs: 500,
    });
  });

  after(async () => {
    await gateway?.close();
    await server?.close();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("a route added, changed and deleted through the API applies without a restart, and is ACKed", async () => {
    assert.equal((await get("shop.test")).status, 200);
    assert.equal((await get("beta.test")).status, 404);

    const created = await api("PUT", "/apps/shop/routes/beta", {
      service: "web",
      host: "beta.test",
      rewrite: "/",
    });
    const acked = await untilApplied(created.revision);
    assert.equal(acked.mine?.routes, 2);
    assert.equal(acked.mine?.url, gateway.url);
    const beta = await get("beta.test", "/x");
    assert.deepEqual([beta.status, beta.body], [200, "ok /x"]);

    // A rate limit of one request (burst 1, refilled once a second): the second request in a row is refused.
    const limited = await api("PUT", `/apps/shop/routes/beta?revision=${created.revision}`, {
      service: "web",
      host: "beta.test",
      rateLimit: { rate: 0.01, burst: 1 },
    });
    await untilApplied(limited.revision);
    const answers = [(await get("beta.test")).status, (await get("beta.test")).status];
    assert.deepEqual(answers, [200, 429]);
    const lifted = await api("PUT", "/apps/shop/routes/beta", { service: "web", host: "beta.test" });
    await untilApplied(lifted.revision);
    assert.equal((await get("beta.test")).status, 200);

    await api("DELETE", "/apps/shop/routes/beta");
    const { configVersion } = await status();
    await untilApplied(configVersion);
    assert.equal((await get("beta.test")).status, 404);
    assert.equal((await get("shop.test")).status, 200);
  });

  test("a traffic policy changed through the API applies without a deploy", async () => {
    // Concurrency 0 is not allowed; a low-criticality service with a concurrency of 1 still serves one at a time.
    const patched = await api("PATCH", "/apps/shop/services/web/traffic", {
      concurrency: 1,
      criticality: "low",
    });
    await untilApplied(patched.service.revision);
    const backend = gateway.table().backends.get("default/shop/web");
    assert.equal(backend?.concurrency, 1);
    assert.equal((await get("shop.test")).status, 200);
    const cleared = await api("PATCH", "/apps/shop/services/web/traffic", {
      concurrency: null,
      criticality: null,
    });
    await untilApplied(cleared.service.revision);
    assert.equal(gateway.table().backends.get("default/shop/web")?.concurrency, Number.POSITIVE_INFINITY);
  });

  test("an invalid route written around the API is refused with the reason; the old table keeps serving", async () => {
    const good = await api("PUT", "/apps/shop/routes/good", { service: "web", host: "good.test" });
    await untilApplied(good.revision);
    const before = gateway.table();

    const bad = await server.store.put("route", "default/shop/broken", {
      tenant: "default",
      app: "shop",
      name: "broken",
      spec: { service: "web", host: "broken.test", rateLimit: { rate: -5 } },
      createdAt: "",
      updatedAt: "",
    });
    const deadline = Date.now() + 10_000;
    let seen = await status();
    while (seen.mine?.rejectedVersion !== bad.revision) {
      if (Date.now() > deadline) throw new Error(`no NACK: ${JSON.stringify(seen)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      seen = await status();
    }
    assert.equal(seen.mine?.inSync, false);
    assert.match(
      seen.mine?.error ?? "",
      /route default\/shop\/broken: rateLimit\.rate: must be a number above 0/,
    );
    assert.equal(seen.mine?.version, before.version);
    assert.equal(gateway.table(), before, "the old table still serves");
    assert.equal((await get("good.test")).status, 200);
    assert.equal((await get("broken.test")).status, 404);

    await server.store.delete("route", "default/shop/broken");
    const { configVersion } = await status();
    const fixed = await untilApplied(configVersion);
    assert.equal(fixed.mine?.error, undefined);
    await api("DELETE", "/apps/shop/routes/good");
  });

  test("swapping the table under load drops no request", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    const counts = { ok: 0, other: 0, errors: 0 };
    const failures: string[] = [];
    let running = true;
    const client = async () => {
      while (running) {
        try {
          const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
            const req = http.get(
              { port: gateway.port, host: "127.0.0.1", path: "/load", headers: { host: "shop.test" }, agent },
              resolve,
            );
            req.on("error", reject);
          });
          res.resume();
          await new Promise<void>((resolve, reject) => res.on("end", resolve).on("error", reject));
          if (res.statusCode === 200) counts.ok++;
          else {
            counts.other++;
            failures.push(`status ${res.statusCode}`);
          }
        } catch (err) {
          counts.errors++;
          failures.push((err as Error).message);
        }
      }
    };
    const clients = Array.from({ length: 20 }, client);
    // Counts the tables swapped in while the clients run (the test is only worth something if there are many).
    let swaps = 0;
    let seen = gateway.table();
    const watcher = setInterval(() => {
      if (gateway.table() !== seen) {
        seen = gateway.table();
        swaps++;
      }
    }, 1);
    try {
      let last = 0;
      for (let i = 0; i < 30; i++) {
        // Other routes come and go, their policies change, and the service's own policies change too.
        const r = await api("PUT", `/apps/shop/routes/churn-${i % 4}`, {
          service: "web",
          host: `churn-${i % 4}.test`,
          rateLimit: { rate: 100 + i },
        });
        last = r.revision;
        if (i % 3 === 0) await api("DELETE", `/apps/shop/routes/churn-${(i + 1) % 4}`).catch(() => {});
        if (i % 5 === 0) {
          const p = await api("PATCH", "/apps/shop/services/web/traffic", {
            breaker: { failures: 50 + i },
            concurrency: 10_000 + i,
          });
          last = Math.max(last, p.service.revision);
        }
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
      await untilApplied(last);
    } finally {
      running = false;
      clearInterval(watcher);
      await Promise.all(clients);
      agent.destroy();
    }
    assert.ok(swaps >= 20, `only ${swaps} table swaps under load`);
    assert.ok(counts.ok > 200, `only ${counts.ok} requests went through`);
    assert.deepEqual(
      { other: counts.other, errors: counts.errors, first: failures.slice(0, 3) },
      { other: 0, errors: 0, first: [] },
    );
  });
});
