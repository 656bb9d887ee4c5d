// Keep-alive pools per instance across table swaps: connections are reused,
// and a pool whose instance left the table closes only after its requests in
// flight have their answers.

import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, testInstance, testNode, testService, waitFor } from "./testing.ts";

const WEB = { app: "shop", service: "web" };

test("connections are reused; a swap that removes an instance lets its request in flight finish", async (t) => {
  const connections = { old: 0, next: 0 };
  let release: () => void = () => {};
  const old = await startUpstream((req, res) => {
    if (req.url === "/slow") {
      release = () => res.end("old, slow");
      return;
    }
    res.end("old");
  });
  old.server.on("connection", () => connections.old++);
  const next = await startUpstream((_req, res) => res.end("next"));
  next.server.on("connection", () => connections.next++);
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await Promise.all([old.close(), next.close()]);
  });
  const port = await proxy.listen(0, "127.0.0.1");
  const table = (id: string, upstreamPort: number, version: number) =>
    buildRouteTable(
      {
        services: [testService("default", "shop", "web", [{ host: "shop.test" }])],
        instances: [testInstance(id, WEB, "local", upstreamPort)],
        nodes: [testNode("local", "127.0.0.1")],
      },
      version,
    );
  proxy.table = table("old", old.port, 1);
  for (let i = 0; i < 20; i++) assert.equal((await request(port, "shop.test", "/")).body, "old");
  assert.equal(connections.old, 1, "twenty requests in a row share one kept-alive connection");

  const slow = request(port, "shop.test", "/slow");
  await waitFor(() => old.hits === 21, 3000, "the slow request to reach the old instance");
  proxy.table = table("next", next.port, 2);
  assert.equal((await request(port, "shop.test", "/")).body, "next");
  release();
  const answer = await slow;
  assert.equal(answer.status, 200);
  assert.equal(answer.body, "old, slow", "the answer in flight arrives after its pool was closed");
});
