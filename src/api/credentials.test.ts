// Join tokens and node credentials over a real socket: a join token buys one
// credential per node name, expires and runs out; the credential acts as its
// node only (heartbeat, log lines, slugs); herd up's component credentials are
// reused from their files.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ArtifactStore } from "../builder/artifact-store.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import type { Token } from "../model/identity.ts";
import type { Instance } from "../model/objects.ts";
import type { LogEntry } from "../observe/log-store.ts";
import { createToken } from "./auth.ts";
import { ensureComponentCredential } from "./credentials.ts";
import { apiCall } from "./testing.ts";

let server: RunningServer;
const dir = mkdtempSync(join(tmpdir(), "herd-api-join-"));
let slugN1 = "";
let slugN2 = "";

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger, logs: { flushMs: 0 } });
  // Nothing here runs instances: controllers would clean up the hand-made ones below.
  server.controllers.stop();
  assert.equal((await call("POST", "/apps", { name: "shop" })).status, 201);
  const artifacts = new ArtifactStore(join(dir, "artifacts"));
  slugN1 = (await artifacts.put(Buffer.from("slug of n1"), 1024)).digest;
  slugN2 = (await artifacts.put(Buffer.from("slug of n2"), 1024)).digest;
  await putInstance("web-n1", "n1", slugN1);
  await putInstance("web-n2", "n2", slugN2);
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function putInstance(id: string, node: string, slug: string) {
  await server.store.put<Partial<Instance>>("instance", id, {
    id,
    tenant: "default",
    app: "shop",
    service: "web",
    node,
    desired: "running",
    state: "running",
    run: { slug } as Instance["run"],
  });
}

const call = (method: string, path: string, body?: unknown, token = server.adminToken) =>
  apiCall(server, method, path, body, { token });

const joinToken = async (extra: Record<string, unknown> = {}): Promise<string> => {
  const made = await call("POST", "/tokens", { name: "join", kind: "join", expiresIn: "1h", ...extra });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  assert.match(made.body.token, /^herd_jnt_/);
  return made.body.token;
};

const heartbeat = (node: string, token: string) =>
  call(
    "POST",
    `/nodes/${node}/heartbeat`,
    {
      address: "10.0.0.9",
      labels: {},
      capacity: { cpu: 1, memory: 1e9 },
      agentVersion: "test",
      isolation: { cgroups: "none" },
      instances: [],
    },
    token,
  );

describe("joining", () => {
  let n1 = "";

  test("a join token buys a node credential once per node name", async () => {
    const jt = await joinToken({ uses: 2 });
    const joined = await call("POST", "/nodes/n1/join", undefined, jt);
    assert.equal(joined.status, 201, JSON.stringify(joined.body));
    assert.match(joined.body.token, /^herd_agt_/);
    assert.equal(joined.body.node, "n1");
    n1 = joined.body.token;
    const who = await call("GET", "/whoami", undefined, n1);
    assert.equal(who.body.kind, "agent");
    assert.equal(who.body.node, "n1");

    // The same name again, with a join token that still has a use: refused, and the use is kept.
    const again = await call("POST", "/nodes/n1/join", undefined, jt);
    assert.equal(again.status, 409);
    assert.match(again.body.message, /already has a credential/);
    assert.equal((await call("POST", "/nodes/n2/join", undefined, jt)).status, 201);
    // Two uses are gone now.
    const spent = await call("POST", "/nodes/n3/join", undefined, jt);
    assert.equal(spent.status, 401);
    assert.match(spent.body.message, /used up/);
  });

  test("an expired or revoked join token is refused, and it does nothing else", async () => {
    const expired = await createToken(server.store, {
      name: "old join",
      kind: "join",
      expiresAt: new Date(Date.now() - 1000).toISOString(),
    });
    const late = await call("POST", "/nodes/n4/join", undefined, expired.secret);
    assert.equal(late.status, 401);
    assert.match(late.body.message, /expired/);

    const jt = await joinToken();
    assert.equal((await call("GET", "/nodes", undefined, jt)).status, 403);
    assert.equal((await heartbeat("n4", jt)).status, 403);
    assert.equal((await call("GET", "/whoami", undefined, jt)).status, 403);
    const id = jt.split("_")[2];
    assert.equal((await call("DELETE", `/tokens/${id}`)).status, 200);
    assert.equal((await call("POST", "/nodes/n4/join", undefined, jt)).status, 401);
  });

  test("only platform admins make join tokens; uses is only for join tokens", async () => {
    const bad = await call("POST", "/tokens", { name: "x", kind: "gateway", uses: 1 });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.details[0].field, "body.uses");
    assert.equal((await call("POST", "/tokens", { name: "x", kind: "join", uses: 0 })).status, 400);
    const gw = await call("POST", "/tokens", { name: "gw", kind: "gateway" });
    assert.equal((await call("POST", "/tokens", { name: "j", kind: "join" }, gw.body.token)).status, 403);
  });

  test("a node credential heartbeats only as its node", async () => {
    assert.equal((await heartbeat("n1", n1)).status, 200);
    const other = await heartbeat("n2", n1);
    assert.equal(other.status, 403);
    assert.match(other.body.message, /belongs to node n1, not n2/);
    // Nor may it join another name or do what people do.
    assert.equal((await call("POST", "/nodes/n9/join", undefined, n1)).status, 403);
    assert.equal((await call("GET", "/apps", undefined, n1)).status, 403);
  });

  test("a node credential ships lines of its own node's instances only", async () => {
    const ship = (node: string, instance: string, line: string) =>
      call(
        "POST",
        "/logs",
        { node, lines: [{ instance, time: new Date().toISOString(), stream: "stdout", line }] },
        n1,
      );
    assert.equal((await ship("n1", "web-n1", "mine")).status, 204);
    assert.equal((await ship("n1", "web-n2", "forged")).status, 204);
    const asOther = await ship("n2", "web-n2", "forged too");
    assert.equal(asOther.status, 403);
    server.logs.flush();
    const lines = (await call("GET", "/apps/shop/logs?tail=50")).body.items.map((e: LogEntry) => e.line);
    assert.ok(lines.includes("mine"));
    assert.ok(!lines.includes("forged"), "a line of another node's instance is not stored");
    assert.ok(!lines.includes("forged too"));
  });

  test("a node credential fetches the slugs its node runs only", async () => {
    const get = (digest: string, token: string) =>
      fetch(`${server.url}/api/v1/slugs/${digest}`, { headers: { authorization: `Bearer ${token}` } });
    const mine = await get(slugN1, n1);
    assert.equal(mine.status, 200);
    assert.equal(await mine.text(), "slug of n1");
    const theirs = await get(slugN2, n1);
    assert.equal(theirs.status, 404);
    await theirs.body?.cancel();
    const admin = await get(slugN2, server.adminToken);
    assert.equal(admin.status, 200);
    await admin.body?.cancel();
  });

  test("a revoked credential frees the name for a new join", async () => {
    const id = n1.split("_")[2];
    assert.equal((await call("DELETE", `/tokens/${id}`)).status, 200);
    assert.equal((await heartbeat("n1", n1)).status, 401);
    const rejoined = await call("POST", "/nodes/n1/join", undefined, await joinToken());
    assert.equal(rejoined.status, 201);
    assert.equal((await heartbeat("n1", rejoined.body.token)).status, 200);
  });
});

test("herd up's component credentials are kept in a private file and reused while live", async () => {
  const file = join(dir, "credentials", "agent");
  const first = await ensureComponentCredential(server.store, file, { kind: "agent", node: "up-host" });
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(readFileSync(file, "utf8").trim(), first);
  assert.equal(
    await ensureComponentCredential(server.store, file, { kind: "agent", node: "up-host" }),
    first,
  );
  assert.equal((await heartbeat("up-host", first)).status, 200);
  // Another host name (the machine was renamed): a new credential for it.
  const renamed = await ensureComponentCredential(server.store, file, { kind: "agent", node: "new-host" });
  assert.notEqual(renamed, first);
  const gateway = await ensureComponentCredential(server.store, join(dir, "credentials", "gateway"), {
    kind: "gateway",
  });
  assert.equal((await call("GET", "/snapshot?kinds=route", undefined, gateway)).status, 200);
  assert.equal((await call("GET", "/apps", undefined, gateway)).status, 403);
  // A revoked one is replaced.
  const o = (await server.store.list<Token>("token")).items.find((t) => t.value.id === gateway.split("_")[2]);
  assert.ok(o);
  await server.store.put("token", o.key, { ...o.value, revokedAt: new Date().toISOString() });
  const next = await ensureComponentCredential(server.store, join(dir, "credentials", "gateway"), {
    kind: "gateway",
  });
  assert.notEqual(next, gateway);
});
