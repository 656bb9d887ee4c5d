// The platform's own events (a node joined, its address, what it cannot
// isolate) are a platform admin's read, as GET /nodes is: a tenant's user
// sees its own apps' events in GET /events and GET /logs, never the nodes'.

import assert from "node:assert/strict";
import { before, test } from "node:test";
import type { RunningServer } from "../daemons/control-plane.ts";
import type { Event } from "../model/objects.ts";
import type { LogEntry } from "../observe/log-store.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall, testServer } from "./testing.ts";

const fixture = testServer("herd-platform-events-");
let server: RunningServer;
let tokens: TestTokens;

before(async () => {
  server = await fixture.started;
  tokens = await createTestTokens(server.url, server.adminToken);
});

test("node events show to a platform admin, not to a tenant's user; the tenant's own events show to both", async () => {
  const hb = await apiCall(
    server,
    "POST",
    "/nodes/n1/heartbeat",
    {
      address: "10.0.0.7",
      labels: {},
      capacity: { cpu: 2, memory: 4 * 1024 ** 3 },
      allocatable: { cpu: 1.9, memory: 3 * 1024 ** 3 },
      agentVersion: "test",
      isolation: { cgroups: "none", reason: "test" },
      instances: [],
    },
    { token: tokens.agentN1 },
  );
  assert.equal(hb.status, 200, JSON.stringify(hb.body));
  const created = await apiCall(server, "POST", "/apps?tenant=a", { name: "shop" }, { token: tokens.ownerA });
  assert.equal(created.status, 201, JSON.stringify(created.body));

  const events = async (token: string, query = "") => {
    const res = await apiCall(server, "GET", `/events${query}`, undefined, { token });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return (res.body as { items: Event[] }).items;
  };
  const logs = async (token: string, query = "") => {
    const res = await apiCall(server, "GET", `/logs?stream=event${query}`, undefined, { token });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return (res.body as { items: LogEntry[] }).items;
  };

  const admin = await events(server.adminToken, "?tenant=a");
  assert.ok(
    admin.some((e) => e.reason === "NodeRegistered" && /10\.0\.0\.7/.test(e.message)),
    JSON.stringify(admin),
  );
  assert.ok(
    admin.some((e) => e.reason === "AppCreated"),
    JSON.stringify(admin),
  );
  const adminLogs = await logs(server.adminToken, "&tenant=a");
  assert.ok(
    adminLogs.some((e) => e.reason === "NodeRegistered"),
    JSON.stringify(adminLogs),
  );

  for (const token of [tokens.viewerA, tokens.ownerA]) {
    const seen = await events(token);
    assert.deepEqual(
      seen.map((e) => e.reason),
      ["AppCreated"],
    );
    const lines = await logs(token);
    assert.deepEqual(
      lines.map((e) => e.reason),
      ["AppCreated"],
    );
    assert.ok(!JSON.stringify([seen, lines]).includes("10.0.0.7"), "the node's address");
  }
});
