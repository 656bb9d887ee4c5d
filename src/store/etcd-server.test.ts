// `herd server --store etcd://…`: the real control plane keeps its objects in
// a real three-member etcd cluster, and a server started again on the same
// cluster finds them.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { startEtcdCluster } from "./etcd-cluster.ts";
import { EtcdStore } from "./etcd-store.ts";

test("herd server --store etcd:// keeps its objects in etcd", async () => {
  const cluster = await startEtcdCluster(3);
  const dir = await mkdtemp(join(tmpdir(), "herd-etcd-server-"));
  const url = `etcd://${cluster.endpoints.map((e) => e.replace("http://", "")).join(",")}`;
  const servers: RunningServer[] = [];
  const start = async () => {
    const server = await startServer({
      dataDir: join(dir, "server"),
      store: url,
      port: 0,
      logger: silentLogger,
    });
    servers.push(server);
    return server;
  };
  const api = async (server: RunningServer, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${server.url}/api/v1${path}`, {
      method,
      headers: {
        authorization: `Bearer ${server.adminToken}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  try {
    const first = await start();
    assert.ok(first.store instanceof EtcdStore);
    assert.equal((await api(first, "POST", "/tenants", { name: "acme" })).status, 201);
    await first.close();
    servers.pop();

    const direct = await EtcdStore.open({ endpoints: cluster.endpoints });
    try {
      assert.equal((await direct.get<{ name: string }>("tenant", "acme"))?.value.name, "acme");
    } finally {
      await direct.close();
    }

    const second = await start();
    const listed = await api(second, "GET", "/tenants");
    assert.equal(listed.status, 200);
    assert.ok(JSON.stringify(listed.body).includes('"acme"'), JSON.stringify(listed.body));
  } finally {
    for (const server of servers) await server.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
