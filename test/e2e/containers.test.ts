// Containers end to end: a control plane and two agents on loopback, one of
// them with `--dockerd DIR` (it starts its own engine under a temp dir, no
// default bridge, no iptables rules) and `--serve-registry`; both outlive the
// agent, so the test stops them (stopRegistry, stopDockerd: any container
// left goes with the engine). A
// service with `runtime: docker` runs its release in the local base image, one
// with `image:` runs that image; both are placed on the docker node only, in
// their own network and pid namespaces, answer through the gateway (their
// ports published), and go when the app does. `herd run` of the docker
// service runs in a container too. `herd nodes` names each node's drivers.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { DockerApi } from "../../src/agent/docker-api.ts";
import { ensureBaseImage, stopDockerd } from "../../src/agent/docker-daemon.ts";
import { freePort } from "../../src/agent/driver.case.test.ts";
import { stopRegistry } from "../../src/agent/registry.ts";
import { ensureDebianPackages } from "../../src/common/debian-packages.ts";
import type { Instance } from "../../src/model/objects.ts";
import { type Cluster, startCluster, writeApp } from "./cluster.ts";
import { served, waitFor } from "./harness.ts";

// Published ports are on dockerd's (the host's) network: the agents must be on it too, not in namespaces.
process.env.HERD_TEST_LOOPBACK = "1";

const dir = mkdtempSync(join(tmpdir(), "herd-containers-"));
const engineDir = join(dir, "dockerd");
const engine = new DockerApi(join(engineDir, "docker.sock"));
let cluster: Cluster | undefined;
let baseImage = "";

before(async () => {
  const tools = await ensureDebianPackages({
    dockerd: "docker.io",
    busybox: "busybox-static",
    "docker-registry": "docker-registry",
  });
  const registry = `127.0.0.1:${await freePort()}`;
  cluster = await startCluster({
    agents: [{ args: ["--dockerd", engineDir, "--serve-registry", registry] }, {}],
  });
  // The agent made it at start; the same files give the same name.
  baseImage = await ensureBaseImage(engine, tools.busybox);
});

after(async () => {
  try {
    // The registry outlives its agent: stopped while its pid file is there.
    if (cluster) await stopRegistry(join(cluster.nodes[0].dataDir, "registry"));
    await cluster?.stop();
  } finally {
    try {
      await stopDockerd(engineDir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

const containers = async (label: string) =>
  engine.call<{ Id: string; State: string; Labels: Record<string, string> }[]>({
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
  // And what isolation its docker driver gives (a release's container runs as a uid when the agent is root).
  assert.match(row(docker), / · docker: cgroups v[12], sandbox (uid|none)/);
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
    command: mkdir -p /tmp/www && echo "image $HERD_INSTANCE uid $(id -u)" > /tmp/www/index.html && exec httpd -f -p $PORT -h /tmp/www
    resources: { cpu: 0.1, memory: 64Mi }
    routes: [{ host: img.localhost }]
`;
  const root = process.getuid?.() === 0;
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
    // The image names no user: it runs as the tenant's uid all the same (when the agent is root).
    const body = await served(c, "img.localhost", /^image /);
    const uid = Number(/uid (\d+)/.exec(body)?.[1]);
    if (root) assert.ok(uid >= 1_000_000_000, body);

    // Its own user (root here) only where a platform admin allowed the tenant.
    writeApp(
      dir,
      app,
      yaml.replace(
        "    routes: [{ host: img.localhost }]",
        "    user: image\n    routes: [{ host: img.localhost }]",
      ),
    );
    const refused = await c.cli(["deploy", join(dir, app)], { timeoutMs: 120_000 });
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.match(
      refused.stdout + refused.stderr,
      /services\.img\.user: tenant default may not run containers as their image's user/,
    );
    await served(c, "img.localhost", /^image .* uid /);
    const allowed = await c.cli(["tenants", "image-user", "default", "allow"]);
    assert.equal(allowed.code, 0, allowed.stderr);
    const asImage = await c.cli(["deploy", join(dir, app)], { timeoutMs: 120_000 });
    assert.equal(asImage.code, 0, asImage.stdout + asImage.stderr);
    await served(c, "img.localhost", root ? /^image .* uid 0$/m : /^image /);

    // A one-off run of the docker service: in a container of its own (its own pids), on the docker node.
    const run = await c.cli(
      ["run", "--app", app, "--service", "web", "--", "echo pids $(ls /proc | grep -c '^[0-9]')"],
      {
        timeoutMs: 60_000,
      },
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const pids = Number(/pids (\d+)/.exec(run.stdout)?.[1]);
    assert.ok(pids > 0 && pids < 10, run.stdout);
  } finally {
    await c.cli(["tenants", "image-user", "default", "deny"]);
    const gone = await c.cli(["apps", "destroy", app, "--confirm", app]);
    assert.equal(gone.code, 0, gone.stderr);
  }
  await waitFor("the app's containers to be removed", async () => {
    const left = await containers("herd.id");
    return left.length === 0 || undefined;
  });
});
