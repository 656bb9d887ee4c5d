// The machine provider, end to end: a control plane with
// `--machine-provider exec:<script>`, one small agent, and a spare machine
// (its own network namespace, or loopback without root) that only the
// provider starts. A deploy that does not fit makes herd call the script
// with a join token; the script starts the spare's agent with it; the
// pending instances run there and serve through the gateway. Scaled to
// zero, the spare is idle: after --machine-idle herd cordons it and calls
// the script with `release`, the script stops that agent, and the node
// object goes once the agent is gone. The first agent is never touched.

import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { ProviderRequest } from "../../src/model/machines.ts";
import type { Event, Instance, Node } from "../../src/model/objects.ts";
import { type Cluster, startCluster, writeApp } from "./cluster.ts";
import { sleep, waitFor } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "herd-machine-provider-"));
const script = join(work, "provider.mjs");
const config = join(work, "provider-config.json");
const calls = join(work, "calls.ndjson");
let cluster: Cluster;

/**
 * The test's provider: a Node script run by herd with the request on stdin.
 * `request` starts the spare machine's agent (detached, so it outlives the
 * call) with the join token and the labels asked for; `release` stops it.
 * Every call is logged (the join token only as its public prefix).
 */
writeFileSync(
  script,
  `#!${process.execPath}
import { spawn } from "node:child_process";
import { appendFileSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
const { spares } = JSON.parse(readFileSync(${JSON.stringify(config)}, "utf8"));
const req = JSON.parse(readFileSync(0, "utf8"));
appendFileSync(${JSON.stringify(calls)}, JSON.stringify({ ...req, argv: process.argv.slice(2), joinToken: req.joinToken?.split("_").slice(0, 3).join("_") }) + "\\n");
if (req.action === "request") {
  const spare = spares[0];
  const labels = req.needs.flatMap((n) => Object.entries(n.labels).flatMap(([k, v]) => ["--label", k + "=" + v]));
  const out = openSync(join(spare.dataDir, "agent.log"), "a");
  const [cmd, ...args] = [...spare.argv, ...labels, "--server", req.server, "--join-token", req.joinToken];
  const agent = spawn(cmd, args, { detached: true, stdio: ["ignore", out, out] });
  writeFileSync(join(spare.dataDir, "agent.pid"), String(agent.pid));
  agent.unref();
  console.log(JSON.stringify({ message: "starting " + spare.name }));
} else if (req.action === "release") {
  const spare = spares.find((s) => s.name === req.node);
  if (!spare) { console.error("not one of mine: " + req.node); process.exit(2); }
  process.kill(Number(readFileSync(join(spare.dataDir, "agent.pid"), "utf8")), "SIGTERM");
  console.log(JSON.stringify({ message: "stopped " + spare.name }));
}
`,
);
chmodSync(script, 0o755);

/** The agent the provider started, by the pid it recorded (killed here too if the test fails). */
const providerAgentPid = (): number | undefined => {
  const file = cluster?.spares[0] && join(cluster.spares[0].dataDir, "agent.pid");
  return file && existsSync(file) ? Number(readFileSync(file, "utf8")) : undefined;
};
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

before(async () => {
  cluster = await startCluster({
    agents: [{ args: ["--cpu", "1", "--memory", "1Gi"] }],
    spares: [{ args: ["--cpu", "2", "--memory", "2Gi"] }],
    nodeLostAfter: 3,
    serverArgs: ["--machine-provider", `exec:${script}`, "--machine-wait", "2s", "--machine-idle", "3s"],
  });
  writeFileSync(config, JSON.stringify({ spares: cluster.spares }));
});
after(async () => {
  const pid = providerAgentPid();
  if (pid !== undefined && alive(pid)) process.kill(pid, "SIGKILL");
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
});

const providerCalls = (): (ProviderRequest & { argv: string[] })[] =>
  existsSync(calls)
    ? readFileSync(calls, "utf8")
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];
const events = async (): Promise<Event[]> =>
  (await cluster.api<{ items: Event[] }>("GET", "/events?limit=500")).body.items;
const nodes = async (): Promise<Node[]> => (await cluster.api<{ items: Node[] }>("GET", "/nodes")).body.items;
const instances = async (app: string): Promise<Instance[]> =>
  (await cluster.api<{ items: Instance[] }>("GET", `/apps/${app}/instances`)).body.items;

test("instances that fit nowhere bring a machine from the provider; idle, it is handed back and removed", async (t) => {
  const spare = cluster.spares[0];
  // 0.2 CPU (2 units) + 512 MiB each: the small node (768 MiB allocatable) holds one of three.
  const dir = writeApp(
    work,
    "burst",
    "app: burst\nservices:\n  web:\n    command: node server.js\n    instances: 3\n    resources: { units: 2, memory: 512Mi }\n    health: { path: /healthz }\n    routes: [{ host: burst.localhost, path: / }]\n",
  );
  t.after(() => cluster.cli(["apps", "destroy", "burst", "--confirm", "burst"]));

  // With a provider, a rollout that does not fit waits for machines instead of failing at once.
  const deploy = await cluster.cli(["deploy", dir], { timeoutMs: 120_000 });
  assert.equal(deploy.code, 0, deploy.stdout + deploy.stderr);

  const [asked] = providerCalls();
  assert.equal(asked.action, "request");
  assert.deepEqual(asked.argv, ["request"]);
  if (asked.action !== "request") return;
  assert.equal(asked.server, cluster.url);
  assert.match(asked.joinToken, /^herd_jnt_[0-9a-f]+$/);
  assert.equal(asked.machines, 2, "one machine per waiting instance at most");
  assert.equal(asked.needs.length, 1);
  assert.equal(asked.needs[0].instances, 2);
  assert.ok(Math.abs(asked.needs[0].cpu - 0.4) < 1e-9, `needs ${asked.needs[0].cpu} CPU`);
  assert.deepEqual(
    asked.needs[0].services.map((s) => [s.app, s.service, s.instances]),
    [["burst", "web", 2]],
  );
  assert.equal(providerCalls().length, 1, "asked once");

  const running = (await instances("burst")).filter((i) => i.desired === "running" && i.state === "running");
  assert.equal(running.length, 3);
  assert.deepEqual(
    running.map((i) => i.node).sort(),
    ["node-1", spare.name, spare.name],
    "the two that did not fit run on the provider's machine",
  );
  // The gateway reaches them there.
  const onSpare = new Set(running.filter((i) => i.node === spare.name).map((i) => i.id));
  // (The gateway's table follows the store a moment later, and its workers balance apart: ask until each answered.)
  const answered = new Set<string>();
  await waitFor(
    `each instance on ${spare.name} answering through the gateway`,
    async () => {
      const r = await cluster.request("burst.localhost");
      if (r.status === 200) answered.add(r.body.trim());
      return [...onSpare].every((id) => answered.has(id));
    },
    30_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}: answered by ${[...answered].join(", ")}`);
  });

  // The machine controller notices the join on its next pass, which may come after the deploy ended.
  await waitFor("MachineRequested and MachineJoined events", async () => {
    const reasons = (await events()).map((e) => e.reason);
    return reasons.includes("MachineRequested") && reasons.includes("MachineJoined");
  });
  const ev = await cluster.cli(["events"]);
  assert.match(ev.stdout, /MachineJoined.*node \S+ joined: a machine of request m-/);

  // Scaled to zero, the provider's machine is idle: cordoned, released, removed. The first node stays.
  const pid = providerAgentPid()!;
  assert.ok(alive(pid));
  const scale = await cluster.cli(["scale", "web=0", "--app", "burst"]);
  assert.equal(scale.code, 0, scale.stderr);
  const release = await waitFor(
    "the provider to be asked to release the machine",
    () => providerCalls().find((c) => c.action === "release"),
    60_000,
  );
  assert.equal(release.action === "release" && release.node, spare.name);
  assert.equal(release.id, asked.id);
  await waitFor("the provider's agent to stop", () => !alive(pid), 15_000);
  await waitFor("the node to be removed once its agent is gone", async () => {
    const names = (await nodes()).map((n) => n.name);
    return !names.includes(spare.name) && names.includes("node-1");
  });
  // NodeRemoved is recorded just after the node object goes.
  let after: string[] = [];
  await waitFor("MachineIdle, MachineReleased and NodeRemoved events", async () => {
    after = (await events()).map((e) => e.reason);
    return ["MachineIdle", "MachineReleased", "NodeRemoved"].every((r) => after.includes(r));
  }).catch((err: Error) => {
    throw new Error(`${err.message}: ${after}`);
  });
  // The first node was never cordoned nor handed back, and nothing more was asked.
  const first = (await nodes()).find((n) => n.name === "node-1")!;
  assert.equal(first.schedulable, true);
  assert.equal(first.state, "ready");
  await sleep(3000);
  assert.deepEqual(
    providerCalls().map((c) => c.action),
    ["request", "release"],
  );
});
