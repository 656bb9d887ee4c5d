// Containers end to end: a dockerd this test starts (under a temp dir, no
// bridge, no iptables rules; stopped at the end, taking any container left
// with it), a control plane and two agents on loopback, one of them with
// `--docker-socket`. A service with `runtime: docker` runs its release in the
// local base image, one with `image:` runs that image; both are placed on the
// docker node only, answer through the gateway, and go when the app does.
// `herd nodes` names each node's drivers.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Dockerd, ensureBaseImage, startDockerd } from "../../src/agent/docker-daemon.ts";
import { ensureDebianPackages } from "../../src/common/debian-packages.ts";
import type { Instance } from "../../src/model/objects.ts";
import { type Cluster, startCluster, writeApp } from "./cluster.ts";
import { waitFor } from "./harness.ts";

// Containers use dockerd's (the host's) network: the agents must be on it too, not in namespaces.
process.env.HERD_TEST_LOOPBACK = "1";

const dir = mkdtempSync(join(tmpdir(), "herd-containers-"));
let engine: Dockerd | undefined;
let cluster: Cluster | undefined;
let baseImage = "";

before(async () => {
  const tools = await ensureDebianPackages({ dockerd: "docker.io", busybox: "busybox-static" });
  engine = await startDockerd(join(dir, "dockerd"), tools.dockerd);
  baseImage = await ensureBaseImage(engine.api, tools.busybox);
  cluster = await startCluster({
    agents: [{ args: ["--docker-socket", engine.socket] }, {}],
  });
});

after(async () => {
  try {
    await cluster?.stop();
  } finally {
    try {
      await engine?.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

const containers = async (label: string) =>
  (engine as Dockerd).api.call<{ Id: string; State: string; Labels: Record<string, string> }[]>({
    path: "/containers/json",
    query: { all: "true", filters: JSON.stringify({ label: [label] }) },
  });

test("runtime: docker and image: run in containers on the node that has the driver, through the gateway", async () => {
  const c = cluster as Cluster;
  const docker = c.nodes[0].name;
  const nodes = await c.cli(["nodes"]);
  assert.equal(nodes.code, 0, nodes.stderr);
  const row = (name: string) => nodes.stdout.split("\n").find((l) => l.startsWith(`${name} `)) ?? "";
  assert.match(row(docker), /process,docker/);
  assert.doesNotMatch(row(c.nodes[1].name), /docker/);

  const app = "boxed";
  const yaml = `app: ${app}
services:
  web:
    runtime: docker
    command: node server.js
    instances: 2
    resources: { cpu: 0.1, memory: 128Mi }
    health: { path: /healthz }
    routes: [{ host: boxed.localhost }]
  img:
    image: ${baseImage}
    command: mkdir -p /tmp/www && echo "image $HERD_INSTANCE" > /tmp/www/index.html && exec httpd -f -p $PORT -h /tmp/www
    resources: { cpu: 0.1, memory: 64Mi }
    routes: [{ host: img.localhost }]
`;
  const deployed = await c.cli(["deploy", writeApp(dir, app, yaml)], { timeoutMs: 120_000 });
  try {
    assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
    const list = (await c.api<{ items: Instance[] }>("GET", `/instances?app=${app}`)).body.items;
    assert.equal(list.length, 3, JSON.stringify(list));
    for (const i of list) assert.equal(i.node, docker, `${i.id} placed off the docker node`);
    for (const i of list) {
      const [box] = await containers(`herd.id=${i.id}`);
      assert.equal(box?.State, "running", `${i.id} has no running container`);
    }

    const seen = new Set<string>();
    await waitFor("both web containers to answer through the gateway", async () => {
      const r = await c.request("boxed.localhost");
      if (r.status === 200) seen.add(r.body.trim());
      return seen.size === 2;
    });
    const img = await c.request("img.localhost");
    assert.equal(img.status, 200);
    assert.match(img.body, /^image /);
  } finally {
    const gone = await c.cli(["apps", "destroy", app, "--confirm", app]);
    assert.equal(gone.code, 0, gone.stderr);
  }
  await waitFor("the app's containers to be removed", async () => {
    const left = await containers("herd.id");
    return left.length === 0 || undefined;
  });
});
