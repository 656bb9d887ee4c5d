// Components end to end: no component holds the admin token, and the API can
// be reached over TLS only by those that trust its CA.
//
// 1. `herd server --tls` with a gateway (gateway credential, --ca) and an agent
//    that joins with a one-use join token: it runs an app, restarts on the
//    credential it kept, and its node name cannot be joined again.
// 2. `herd up --tls`: its agent and gateway use credentials kept in
//    DIR/credentials, reused by the next start.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Token } from "../../src/model/identity.ts";
import type { Instance, Node } from "../../src/model/objects.ts";
import { type Cluster, startCluster, writeApp } from "./cluster.ts";
import { cleanupHerd, type Herd, ROOT, startHerd, waitFor } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "herd-join-"));
let cluster: Cluster | undefined;
const herds: Herd[] = [];
after(async () => {
  await cluster?.stop();
  for (const h of herds) await cleanupHerd(h);
  rmSync(work, { recursive: true, force: true });
});

const running = async (c: Cluster, app: string) =>
  (await c.api<{ items: Instance[] }>("GET", `/apps/${app}/instances`)).body.items.filter(
    (i) => i.desired === "running" && i.state === "running",
  );

/** Runs `herd agent` until it exits (or 30 s pass); its exit code and output. */
function agentRun(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--no-warnings", join(ROOT, "src/cli/main.ts"), "agent", ...args],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test("an agent joins over TLS with a join token, runs an app, and restarts on the credential it kept", async () => {
  // The gateway with two workers: each calls the API over TLS itself (load reports, certificates).
  cluster = await startCluster({
    agents: [{ args: ["--cpu", "2", "--memory", "2Gi"] }],
    tls: true,
    gatewayWorkers: 2,
  });
  const c = cluster;
  const [node] = c.nodes;
  assert.match(c.url, /^https:/);

  // The credential file: private, this node's, an agent token.
  const file = join(node.dataDir, "credential.json");
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const kept = JSON.parse(readFileSync(file, "utf8")) as { node: string; token: string };
  assert.equal(kept.node, node.name);
  assert.match(kept.token, /^herd_agt_/);
  const tokens = (await c.api<{ items: Token[] }>("GET", "/tokens?all=true")).body.items;
  assert.ok(tokens.some((t) => t.kind === "agent" && t.node === node.name && !t.revokedAt));
  const join1 = tokens.find((t) => t.kind === "join");
  assert.equal(join1?.usesLeft, 0, "the cluster's join token had one use per agent");

  // It runs an app (slug fetched, heartbeats, logs) over TLS; the gateway routes to it.
  const app = writeApp(
    work,
    "joined",
    "app: joined\nservices:\n  web:\n    command: node server.js\n    resources: { units: 1 }\n    health: { path: /healthz }\n    routes: [{ host: joined.localhost }]\n",
  );
  const d = await c.cli(["deploy", app]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  await waitFor("joined to run", async () => (await running(c, "joined")).length === 1);
  await waitFor(
    "the gateway to serve joined",
    async () => (await c.request("joined.localhost")).status === 200,
  );
  // The workers' load reports reach the API: they trust its CA (told at fork, NODE_EXTRA_CA_CERTS left alone).
  for (let i = 0; i < 20; i++) await c.request("joined.localhost");
  await waitFor("the workers' load reports", async () => {
    const load = await c.api<{ services: { figures: { requests?: number; rate?: number } | null }[] }>(
      "GET",
      "/apps/joined/load?window=1m",
    );
    return load.body.services[0]?.figures !== null;
  });

  // A restart: the join token is used up, so only the kept credential can get it back in.
  await node.stop();
  await node.start();
  assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), kept);
  const since = Date.now();
  await waitFor("a heartbeat after the restart", async () => {
    const n = (await c.api<{ items: Node[] }>("GET", "/nodes")).body.items.find((x) => x.name === node.name);
    return n?.state === "ready" && Date.parse(n.lastHeartbeat ?? "") > since;
  });
  // The gateway serves joined again once the restarted agent reports its instance (it may have been replaced).
  await waitFor(
    "the gateway to serve joined after the restart",
    async () => (await c.request("joined.localhost")).status === 200,
  );

  // A fresh join token (from the CLI) cannot take the name of a node that has a credential.
  const jt = await c.cli(["nodes", "join-token", "--ttl", "10m", "--uses", "1"]);
  assert.equal(jt.code, 0, jt.stderr);
  const fresh = jt.stdout.trim();
  assert.match(fresh, /^herd_jnt_/);
  const impostor = await agentRun([
    "--server",
    c.url,
    "--join-token",
    fresh,
    "--ca",
    c.caFile ?? "",
    "--name",
    node.name,
    "--data",
    join(work, "impostor"),
    "--metrics-port",
    "off",
  ]);
  assert.notEqual(impostor.code, 0);
  assert.match(impostor.output, /already has a credential/);
  // Without the CA the agent cannot reach the API at all.
  const blind = await agentRun([
    "--server",
    c.url,
    "--join-token",
    fresh,
    "--name",
    "blind",
    "--data",
    join(work, "blind"),
    "--metrics-port",
    "off",
  ]);
  assert.notEqual(blind.code, 0);
  assert.match(blind.output, /cannot join .*(certificate|verify)/i);
});

test("herd up --tls: its agent and gateway use credentials of their own, kept for the next start", async () => {
  const first = await startHerd({ extraArgs: ["--tls"] });
  herds.push(first);
  assert.match(first.url, /^https:/);
  const agentFile = join(first.dataDir, "credentials", "agent");
  const gatewayFile = join(first.dataDir, "credentials", "gateway");
  assert.equal(statSync(agentFile).mode & 0o777, 0o600);
  assert.equal(statSync(gatewayFile).mode & 0o777, 0o600);
  const agent = readFileSync(agentFile, "utf8").trim();
  const gateway = readFileSync(gatewayFile, "utf8").trim();
  assert.match(agent, /^herd_agt_/);
  assert.match(gateway, /^herd_gwt_/);

  const d = await first.cli(["deploy", join(ROOT, "examples/hello")]);
  assert.equal(d.code, 0, d.stdout + d.stderr);
  await waitFor(
    "hello through the gateway",
    async () => (await first.request("hello.localhost")).status === 200,
  );
  await first.stop();

  const second = await startHerd({ dataDir: first.dataDir, extraArgs: ["--tls"] });
  herds.push(second);
  assert.equal(readFileSync(agentFile, "utf8").trim(), agent);
  assert.equal(readFileSync(gatewayFile, "utf8").trim(), gateway);
  await waitFor("hello again", async () => (await second.request("hello.localhost")).status === 200);
  const tokens = (await second.api<{ items: Token[] }>("GET", "/tokens?all=true")).body.items;
  assert.equal(tokens.filter((t) => t.kind === "agent").length, 1);
  assert.equal(tokens.filter((t) => t.kind === "gateway").length, 1);
});
