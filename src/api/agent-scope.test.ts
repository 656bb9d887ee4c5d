// An agent's token acts for its own node only: it heartbeats as that node and
// ships the log lines of that node's instances, never another node's (which
// may belong to any tenant).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Instance } from "../model/objects.ts";
import type { LogEntry } from "../observe/log-store.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
let agent: string;
const dir = mkdtempSync(join(tmpdir(), "herd-agent-scope-"));

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger, logs: { flushMs: 0 } });
  // The instances below are made by hand: controllers would clean them up.
  server.controllers.stop();
  for (const tenant of ["a", "b"]) {
    assert.equal((await apiCall(server, "POST", "/tenants", { name: tenant })).status, 201);
  }
  for (const [id, tenant, node] of [
    ["a-1", "a", "n1"],
    ["b-1", "b", "n2"],
  ]) {
    await server.store.put<Partial<Instance>>("instance", id, {
      id,
      tenant,
      app: "shop",
      service: "web",
      node,
      desired: "running",
      state: "running",
    });
  }
  const made = await apiCall(server, "POST", "/tokens", { name: "n1", kind: "agent", node: "n1" });
  agent = made.body.token;
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const line = (instance: string, text: string) => ({
  instance,
  time: new Date().toISOString(),
  stream: "stdout",
  line: text,
});

test("an agent ships its own node's lines; another node's instance lines are dropped", async () => {
  const res = await apiCall(
    server,
    "POST",
    "/logs",
    { node: "n1", lines: [line("a-1", "mine"), line("b-1", "forged into tenant b")] },
    { token: agent },
  );
  assert.equal(res.status, 204);
  server.logs.flush();
  const lines = async (tenant: string) =>
    (await apiCall(server, "GET", `/logs?tenant=${tenant}&stream=stdout`)).body.items.map(
      (e: LogEntry) => e.line,
    );
  assert.deepEqual(await lines("a"), ["mine"]);
  assert.deepEqual(await lines("b"), []);
});

test("an agent may not ship a batch as another node", async () => {
  const res = await apiCall(
    server,
    "POST",
    "/logs",
    { node: "n2", lines: [line("b-1", "x")] },
    { token: agent },
  );
  assert.equal(res.status, 403);
  assert.match(res.body.message, /belongs to node n1, not n2/);
});

test("a platform admin (herd up's agent in process) still ships any node's lines", async () => {
  const res = await apiCall(server, "POST", "/logs", { node: "n2", lines: [line("b-1", "admin's")] });
  assert.equal(res.status, 204);
  server.logs.flush();
  const got = (await apiCall(server, "GET", "/logs?tenant=b&stream=stdout")).body.items.map(
    (e: LogEntry) => e.line,
  );
  assert.deepEqual(got, ["admin's"]);
});

test("an agent heartbeats as its own node only", async () => {
  const res = await apiCall(server, "POST", "/nodes/n2/heartbeat", {}, { token: agent });
  assert.equal(res.status, 403);
});
