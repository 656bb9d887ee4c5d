/**
 * The Docker driver against a real dockerd that this test starts under a temp
 * dir (its own containerd, no bridge, no iptables rules) and stops at the end,
 * with the base image made locally from busybox-static and node's libraries.
 */

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { DockerDriver } from "./docker-driver.ts";
import { withTestDockerd } from "./dockerd.case.test.ts";
import { get, harness, runDriverConformance, waitFor } from "./driver.case.test.ts";
import type { InstanceProcess } from "./driver.ts";

const docker = withTestDockerd("herd-dockerd-");
const create = (stateRoot: string): DockerDriver => docker.driver(stateRoot);

runDriverConformance("docker", create);

describe("DockerDriver", () => {
  test("a container has its own network and pid namespaces, and its port is published on the host", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    const spec = await h.spec(
      "ns1",
      `echo "pid $$ sees $(ls /proc | grep -c '^[0-9]') pids"; exec "${process.execPath}" server.cjs`,
    );
    const started = await driver.start(spec);
    assert.equal(await waitFor(() => get(spec.port), "the published port to answer"), "hello from ns1\n");
    for (const ns of ["net", "pid"])
      assert.notEqual(readlinkSync(`/proc/${started.pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), ns);
    // docker-init is pid 1, the wrapper and the shell come next: the container sees its own few processes only.
    const line = (await driver.tail("ns1", 5)).find((l) => l.startsWith("pid ")) ?? "";
    const [pid, seen] = (/^pid (\d+) sees (\d+) pids$/.exec(line) ?? []).slice(1).map(Number);
    assert.ok(pid < 20 && seen < 10, line);
    const inspected = await docker.engine.api.call<{
      HostConfig: {
        NetworkMode: string;
        PidMode: string;
        PortBindings: Record<string, { HostPort: string }[]>;
      };
    }>({ path: `/containers/${await containerOf("ns1")}/json` });
    assert.equal(inspected?.HostConfig.NetworkMode, "herd");
    assert.equal(inspected?.HostConfig.PidMode, "");
    assert.equal(inspected?.HostConfig.PortBindings[`${spec.port}/tcp`]?.[0]?.HostPort, String(spec.port));
  });

  test("a release's container runs as its tenant's uid: it writes its data dir and its logs, not its state dir; it reads its config dir, never writes it", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    const exits: InstanceProcess[] = [];
    driver.onExit((p) => exits.push(p));
    const spec = await h.spec(
      "uid1",
      `id -u; echo kept > "$DATA/file" && echo data-ok; ln -s /etc/hostname /run/herd/state/output.log.1 2>/dev/null || echo state-refused; ` +
        `cat "$HERD_CONFIG_FILE"; (echo x > "$HERD_CONFIG_FILE") 2>/dev/null || echo config-refused`,
    );
    const dataDir = join(h.root, "uid1", "data");
    const configDir = join(h.root, "uid1", "config");
    mkdirSync(configDir, { mode: 0o755 });
    writeFileSync(join(configDir, "config.json"), "config-v1\n", { mode: 0o644 });
    const env = { ...spec.env, DATA: dataDir, HERD_CONFIG_FILE: join(configDir, "config.json") };
    await driver.start({ ...spec, tenant: "acme", dataDir, configDir, env });
    const exit = await waitFor(() => exits[0], "the run to end", 30_000);
    const lines = await driver.tail("uid1", 10);
    assert.equal(exit.exitCode, 0, lines.join("\n"));
    const [uid, ...rest] = lines;
    assert.ok(Number(uid) >= 1_000_000_000, `runs as ${uid}`);
    assert.deepEqual(rest, ["data-ok", "state-refused", "config-v1", "config-refused"]);
    assert.equal(readFileSync(join(dataDir, "file"), "utf8"), "kept\n");
    assert.equal(driver.isolation().sandbox, "uid");
  });

  test("a container reaches the host's loopback endpoints its env names (forwarded through the bridge)", async (t) => {
    const host = createServer((_req, res) => res.end("from the host's loopback\n"));
    await new Promise<void>((resolve) => host.listen(0, "127.0.0.1", resolve));
    t.after(() => host.close());
    const { port } = host.address() as AddressInfo;
    const h = harness(t, create);
    const driver = h.driver();
    const exits: InstanceProcess[] = [];
    driver.onExit((p) => exits.push(p));
    const spec = await h.spec("lo1", "echo $TARGET; wget -qO- $TARGET");
    await driver.start({ ...spec, env: { ...spec.env, TARGET: `http://127.0.0.1:${port}/` } });
    const exit = await waitFor(() => exits[0], "the run to end");
    const lines = await driver.tail("lo1", 5);
    assert.equal(exit.exitCode, 0, lines.join("\n"));
    assert.doesNotMatch(lines[0] ?? "", /127\.0\.0\.1/, "rewritten to the bridge's address");
    assert.equal(lines[1], "from the host's loopback");
  });

  test("a memory limit is the container's, and going over it is reported as an OOM kill", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    const exits: InstanceProcess[] = [];
    driver.onExit((p) => exits.push(p));
    const spec = await h.spec(
      "oom1",
      `"${process.execPath}" -e "const a = []; setInterval(() => a.push(Buffer.alloc(16 << 20, 1)), 10)"`,
    );
    await driver.start({
      ...spec,
      resources: { cpu: 0.2, memory: 64 << 20, memoryLimit: 128 << 20, cpuLimit: 0.5 },
    });
    const inspected = await docker.engine.api.call<{
      HostConfig: { Memory: number; NanoCpus: number; CpuShares: number };
    }>({
      path: `/containers/${await containerOf("oom1")}/json`,
    });
    assert.equal(inspected?.HostConfig.Memory, 128 << 20);
    assert.equal(inspected?.HostConfig.NanoCpus, 0.5e9);
    assert.equal(inspected?.HostConfig.CpuShares, Math.round(0.2 * 1024));
    const exit = await waitFor(() => exits[0], "the OOM kill", 30_000);
    assert.equal(exit.state, "exited");
    assert.equal(exit.oomKilled, true);
  });

  test("started() brings the ceiling of a running container down from the start boost; usage reads its CPU and memory", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    const spec = await h.spec("cpu1", `"${process.execPath}" server.cjs`);
    await driver.start({ ...spec, startCpu: 2, resources: { cpu: 0.5, memory: 256 << 20, cpuLimit: 0.5 } });
    const nanoCpus = async () =>
      (
        await docker.engine.api.call<{ HostConfig: { NanoCpus: number } }>({
          path: `/containers/${await containerOf("cpu1")}/json`,
        })
      )?.HostConfig.NanoCpus;
    assert.equal(await nanoCpus(), 2e9, "the start boost");
    driver.started?.("cpu1", 0.5);
    await waitFor(async () => ((await nanoCpus()) === 0.5e9 ? true : undefined), "the ceiling to come down");
    // Its command begins once its firewall rules are in: the server is up when it answers.
    await waitFor(() => get(spec.port), "the server to answer");
    const usage = await driver.usage("cpu1");
    assert.ok((usage?.memoryBytes ?? 0) > 1 << 20, JSON.stringify(usage));
    assert.ok((usage?.cpuSeconds ?? 0) > 0, JSON.stringify(usage));
  });

  test("criticality scales a container's CpuShares as a process instance's cgroup: critical from started(), low at once", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    const shares = async (id: string) =>
      (
        await docker.engine.api.call<{ HostConfig: { CpuShares: number } }>({
          path: `/containers/${await containerOf(id)}/json`,
        })
      )?.HostConfig.CpuShares;
    const crit = await h.spec("crit1", `"${process.execPath}" server.cjs`);
    await driver.start({ ...crit, criticality: "critical", resources: { cpu: 0.5, memory: 128 << 20 } });
    assert.equal(await shares("crit1"), 512, "its request's weight until it serves");
    driver.started?.("crit1", undefined);
    await waitFor(async () => ((await shares("crit1")) === 2048 ? true : undefined), "4× its request");
    const low = await h.spec("low1", `"${process.execPath}" server.cjs`);
    await driver.start({ ...low, criticality: "low", resources: { cpu: 0.5, memory: 128 << 20 } });
    assert.equal(await shares("low1"), 256, "half its request");
    driver.started?.("low1", undefined);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await shares("low1"), 256, "started() leaves it");
  });

  test("usage says how long a container waited for a CPU: two spinners on one CPU each wait about half", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    // Two processes of the container (busybox's sh and taskset), both on CPU 0: its process tree is read.
    const spin = "taskset -c 0 sh -c 'while :; do :; done'";
    const spec = await h.spec("spin1", `${spin} & exec ${spin}`);
    await driver.start(spec);
    await waitFor(async () => ((await driver.usage("spin1")) ? true : undefined), "the container to run");
    await new Promise((r) => setTimeout(r, 1000));
    const usage = await driver.usage("spin1");
    const share = usage?.cpuWaitShare;
    assert.ok(share !== undefined && share >= 0.3 && share <= 1, `waited ${share} of its runnable time`);
    // The daemon's stats are asked for at most every 5 s: a reading within them repeats, marked as read then.
    assert.ok(usage?.readAt !== undefined, JSON.stringify(usage));
    assert.equal((await driver.usage("spin1"))?.readAt, usage.readAt);
  });

  test("runs an image with its own command when the spec gives none, and with the spec's otherwise", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    const exits: InstanceProcess[] = [];
    driver.onExit((p) => exits.push(p));
    // The base image has no command of its own: one is needed.
    const bare = await h.spec("img0", "");
    await assert.rejects(driver.start({ ...bare, image: docker.baseImage }), /names no command/);
    assert.equal(await driver.inspect("img0"), undefined);

    const spec = await h.spec("img1", "echo from $HERD_INSTANCE in $(pwd); exit 4");
    await driver.start({ ...spec, image: docker.baseImage });
    const exit = await waitFor(() => exits[0], "the image's exit");
    assert.equal(exit.exitCode, 4);
    // The image's working dir (/), not the release dir: an image brings its own files.
    assert.deepEqual(await driver.tail("img1", 5), ["from img1 in /"]);
  });

  test("an image runs as its tenant's uid, with group 0 and a HOME; with imageUser, as the image's own user", async (t) => {
    const h = harness(t, create);
    const driver = h.driver();
    const exits: InstanceProcess[] = [];
    driver.onExit((p) => exits.push(p));
    const run = async (id: string, imageUser: boolean) => {
      const spec = await h.spec(
        id,
        `id -u; id -G; echo "home $HOME"; echo kept > "$DATA/file" && echo data-ok`,
      );
      const dataDir = join(h.root, id, "data");
      await driver.start({
        ...spec,
        image: docker.baseImage,
        tenant: "acme",
        dataDir,
        env: { ...spec.env, DATA: dataDir },
        ...(imageUser ? { imageUser } : {}),
      });
      const exit = await waitFor(() => exits.find((e) => e.id === id), `${id} to end`, 30_000);
      const lines = await driver.tail(id, 5);
      assert.equal(exit.exitCode, 0, lines.join("\n"));
      return lines;
    };
    const [uid, groups, ...rest] = await run("imgu1", false);
    assert.ok(Number(uid) >= 1_000_000_000, `runs as ${uid}`);
    assert.deepEqual(groups?.split(" ").sort(), [uid, "0"].sort());
    // The base image sets no HOME and has no passwd entry for the uid: the driver gives it /tmp.
    assert.deepEqual(rest, ["home /tmp", "data-ok"]);
    // The image's user: the base image names none, so root (the engine's HOME for it is /root).
    const [rootUid, , rootHome] = await run("imgu2", true);
    assert.equal(rootUid, "0");
    assert.notEqual(rootHome, "home /tmp");
  });
});

test("a release dir with a Dockerfile is built once per content and its image runs; a failing build leaves nothing", async (t) => {
  const h = harness(t, create);
  const driver = h.driver();
  const spec = await h.spec("built1", "");
  writeFileSync(
    join(spec.dir, "Dockerfile"),
    "FROM herd-base\nRUN mkdir /www && echo built in the image > /www/index.html\nCMD httpd -f -p $PORT -h /www\n",
  );
  await driver.start(spec);
  assert.equal(
    await waitFor(() => get(spec.port, "/index.html"), "the built image to answer"),
    "built in the image\n",
  );
  const images = async () =>
    (await docker.engine.api.call<{ RepoTags: string[] }[]>({ path: "/images/json" }))
      ?.flatMap((i) => i.RepoTags)
      .filter((tag) => tag.startsWith("herd-build:"));
  const built = await images();
  assert.equal(built?.length, 1, JSON.stringify(built));
  // The same content again: the same image, no second build.
  const again = await h.spec("built2", "");
  writeFileSync(join(again.dir, "Dockerfile"), readFileSync(join(spec.dir, "Dockerfile")));
  await driver.start(again);
  assert.equal(
    await waitFor(() => get(again.port, "/index.html"), "the second instance"),
    "built in the image\n",
  );
  assert.deepEqual(await images(), built);

  const broken = await h.spec("broken1", "");
  writeFileSync(join(broken.dir, "Dockerfile"), "FROM herd-base\nRUN echo failing step && exit 3\n");
  await assert.rejects(
    driver.start(broken),
    /did not build: .*returned a non-zero code: 3[\s\S]*failing step/,
  );
  assert.equal(await driver.inspect("broken1"), undefined);
});

test("a Dockerfile's RUN steps run on herd's bridge behind the firewall, never on the host's network: no port of the platform answers them", async (t) => {
  const h = harness(t, create);
  const driver = h.driver() as DockerDriver;
  if (driver.isolation().network !== "nftables") {
    t.skip(`no firewall: ${driver.isolation().missing?.join("; ")}`);
    return;
  }
  let accepted = 0;
  const platform = createNetServer((s) => {
    accepted++;
    s.on("error", () => {});
    s.end();
  });
  await new Promise<void>((resolve) => platform.listen(0, "0.0.0.0", resolve));
  t.after(() => platform.close());
  const { port } = platform.address() as AddressInfo;
  driver.setNetworkPolicy({ ports: { min: 20000, max: 20100 }, protect: [{ port }] });
  // On the host's network 127.0.0.1 was the host's own loopback; from the bridge the host is its
  // gateway, and any of its other addresses.
  const own = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && a.family === "IPv4" && !a.internal)
    .map((a) => a!.address);
  const hosts = ["127.0.0.1", "$(ip route | awk '/^default/ {print $3}')", ...own];
  const tries = hosts.map(
    (host) => `(nc -w 2 ${host} ${port} </dev/null && echo "reached ${host}" || echo "not ${host}")`,
  );
  const spec = await h.spec("walled1", "");
  writeFileSync(
    join(spec.dir, "Dockerfile"),
    `FROM herd-base\nRUN { ${tries.join("; ")}; } > /tries\nCMD cat /tries\n`,
  );
  const exits: InstanceProcess[] = [];
  driver.onExit((p) => exits.push(p));
  await driver.start(spec);
  await waitFor(() => exits[0], "the image's command to end", 30_000);
  const lines = await driver.tail("walled1", 10);
  assert.equal(lines.length, hosts.length, lines.join("\n"));
  assert.ok(
    lines.every((l) => l.startsWith("not ")),
    lines.join("\n"),
  );
  assert.equal(accepted, 0);
  // The build's sandbox container went with the build.
  const left = await docker.engine.api.call<unknown[]>({
    path: "/containers/json",
    query: { all: "true", filters: JSON.stringify({ label: ["herd.build"] }) },
  });
  assert.deepEqual(left, []);
});

test("a build's sandbox container that an agent left when it died goes at the next agent's start", async (t) => {
  const h = harness(t, create);
  const api = docker.engine.api;
  const left = await api.call<{ Id: string }>({
    method: "POST",
    path: "/containers/create",
    body: {
      Image: docker.baseImage,
      Entrypoint: ["/bin/sleep"],
      Cmd: ["600"],
      Labels: { "herd.state-root": h.stateRoot, "herd.build": "built9" },
      HostConfig: { NetworkMode: "none" },
    },
  });
  await api.call({ method: "POST", path: `/containers/${left.Id}/start` });
  assert.deepEqual(await h.driver().recover(), []);
  const found = await api.call<unknown[]>({
    path: "/containers/json",
    query: { all: "true", filters: JSON.stringify({ label: ["herd.build"] }) },
  });
  assert.deepEqual(found, []);
});

async function containerOf(id: string): Promise<string> {
  const list = await docker.engine.api.call<{ Id: string; Labels: Record<string, string> }[]>({
    path: "/containers/json",
    query: { all: "true", filters: JSON.stringify({ label: [`herd.id=${id}`] }) },
  });
  assert.equal(list?.length, 1);
  return list[0].Id;
}
