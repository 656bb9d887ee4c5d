// Containers on one machine: `herd up --docker` starts herd's own Docker
// engine under the data dir, and a `runtime: docker` service is served from a
// container through the gateway, and one whose app does not listen is not
// healthy. Ctrl-C (SIGTERM here) stops the container
// and the engine with the apps; the next `herd up --docker` starts both
// again; after a kill -9 of herd up, `herd down` stops the container and the
// engine. The engine outlives a test that fails: it is stopped in `after`.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { stopDockerd } from "../../src/agent/docker-daemon.ts";
import { ensureDebianPackages } from "../../src/common/debian-packages.ts";
import { cleanupHerd, type Herd, runCli, served, startHerd, waitFor } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "herd-containers-up-"));
const app = join(work, "boxed");
const HOST = "boxed.localhost";
// What the app says from inside a container: the engine makes /.dockerenv in every one.
const IN_CONTAINER = /^container=true /;
let herd: Herd | undefined;
let dataDir: string | undefined;

// herd up --docker installs them itself when missing; here first, so that its start is not an apt-get run.
before(() => ensureDebianPackages({ dockerd: "docker.io", busybox: "busybox-static" }));

after(async () => {
  try {
    await cleanupHerd(herd, { keepDir: true });
    if (dataDir !== undefined) await stopDockerd(join(dataDir, "dockerd"));
  } finally {
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
});

const enginePid = (dir: string): number => Number(readFileSync(join(dir, "dockerd", "dockerd.pid"), "utf8"));

/** Alive and not a zombie: an engine herd down stopped is reaped by init, not by the test. */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

test("herd up --docker serves a runtime: docker service from a container; the engine stops with the apps and with herd down", async () => {
  herd = await startHerd({ extraArgs: ["--docker"] });
  dataDir = herd.dataDir;
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "boxed", private: true }));
  writeFileSync(
    join(app, "server.js"),
    [
      'const fs = require("node:fs");',
      'require("node:http")',
      '  .createServer((req, res) => res.end("container=" + fs.existsSync("/.dockerenv") + " " + process.env.HERD_INSTANCE))',
      "  .listen(Number(process.env.PORT));",
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(app, "herd.yaml"),
    ["services:", "  web:", "    runtime: docker", "    command: node server.js", ""].join("\n"),
  );
  const deploy = await herd.cli(["deploy", app]);
  assert.equal(deploy.code, 0, deploy.stdout + deploy.stderr);
  await served(herd, HOST, IN_CONTAINER);
  const nodes = await herd.cli(["nodes"]);
  assert.match(nodes.stdout, /process,docker/);

  // A container whose app does not listen is not healthy: its checks go to the container's own address,
  // not to its published port on this machine, where the engine's proxy takes any connection.
  const mute = join(work, "mute");
  mkdirSync(mute);
  writeFileSync(join(mute, "package.json"), JSON.stringify({ name: "mute", private: true }));
  writeFileSync(
    join(mute, "herd.yaml"),
    [
      "services:",
      "  web:",
      "    runtime: docker",
      "    command: sleep 60",
      "    health: { startup: 2s }",
      "    routes: [{ host: mute.localhost }]",
      "",
    ].join("\n"),
  );
  const silent = await herd.cli(["deploy", mute, "--deadline", "10s"]);
  assert.notEqual(silent.code, 0, silent.stdout);
  assert.match(silent.stdout + silent.stderr, /check 1 failed: connect to port \d+: connect ECONNREFUSED/);
  assert.match(silent.stderr, /made no progress for 10s/);
  assert.equal((await herd.cli(["apps", "destroy", "mute", "--confirm", "mute"])).code, 0);
  await waitFor("mute's instances to stop and the app to go", async () => {
    return (await herd!.api("GET", "/apps/mute")).status === 404;
  });

  // Stopped on purpose: the container and herd's engine go with the apps.
  const engine = enginePid(dataDir);
  assert.ok(running(engine));
  await herd.stop();
  assert.match(herd.output(), /herd stopped 1 app instance;/);
  assert.doesNotMatch(herd.output(), /cannot stop/);
  assert.equal(running(engine), false, "herd's Docker engine stopped with herd up");

  // The next start brings the engine and the container back.
  herd = await startHerd({ dataDir, extraArgs: ["--docker"] });
  await served(herd, HOST, IN_CONTAINER, "/", 60_000);
  assert.doesNotMatch(herd.output(), /heartbeat failed/);

  // herd up killed: the container keeps serving until herd down stops it and the engine.
  const again = enginePid(dataDir);
  await herd.kill9();
  assert.equal((await herd.request(HOST)).status, 200);
  const down = await runCli(["down", "--data", dataDir]);
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /herd down: stopped the gateway, 1 app instance, herd's Docker engine\n/);
  assert.equal(running(again), false);
  assert.ok(existsSync(join(dataDir, "docker.json")));
});

test("herd up --docker and --docker-socket together are refused before anything starts", async () => {
  const r = await runCli([
    "up",
    "--docker",
    "--docker-socket",
    "/run/docker.sock",
    "--data",
    join(work, "x"),
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--docker and --docker-socket do not go together/);
  assert.equal(existsSync(join(work, "x")), false);
});
