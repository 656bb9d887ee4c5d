/**
 * The agent's container setup with real processes: `--dockerd DIR` starts an
 * engine that outlives the agent (the next agent finds it and adopts its
 * containers), `--serve-registry` runs the registry a build is pushed to.
 * Both outlive the agent; the test stops them (stopDockerd, stopRegistry)
 * and removes every temp dir at the end.
 */

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { startContainers } from "./containers.ts";
import { stopDockerd } from "./docker-daemon.ts";
import { BUILD_REPO } from "./docker-images.ts";
import { freePort, get, harness, waitFor } from "./driver.case.test.ts";
import { manifestDigest, stopRegistry } from "./registry.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-containers-"));
const engineDir = join(dir, "dockerd");
const dataDir = join(dir, "agent");

before(async () => {
  await ensureDebianPackages({
    dockerd: "docker.io",
    busybox: "busybox-static",
    "docker-registry": "docker-registry",
  });
});

after(async () => {
  try {
    await Promise.all([stopDockerd(engineDir), stopRegistry(join(dataDir, "registry"))]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--dockerd starts an engine that outlives the agent; --serve-registry takes its builds; the next agent adopts", async (t) => {
  const address = `127.0.0.1:${await freePort()}`;
  const options = { dataDir, dockerd: engineDir, serveRegistry: address };
  const first = await startContainers(options);
  assert.ok(first?.driver && first.registry);
  const pid = readFileSync(join(engineDir, "dockerd.pid"), "utf8");
  const registryPid = first.registry.pid();
  const driver = first.driver;
  // The harness stands for the instances' dirs; its cleanup uses a driver of the second agent's.
  let second: Awaited<ReturnType<typeof startContainers>>;
  const h = harness(t, () => {
    if (!second?.driver) throw new Error("no second agent");
    return second.driver;
  });
  const spec = await h.spec("own1", "");
  writeFileSync(
    join(spec.dir, "Dockerfile"),
    "FROM herd-base\nRUN mkdir /www && echo own engine > /www/index.html\nCMD httpd -f -p $PORT -h /www\n",
  );
  await driver.start(spec);
  assert.equal(await waitFor(() => get(spec.port, "/index.html"), "the build to answer"), "own engine\n");
  const tags = (await (await fetch(`http://${address}/v2/${BUILD_REPO}/tags/list`)).json()) as {
    tags: string[];
  };
  assert.equal(tags.tags.length, 1);
  assert.ok(await manifestDigest({ address }, BUILD_REPO, tags.tags[0]));

  // The agent goes (as kill -9 would: nothing more is called); the engine, the registry and the container stay.
  driver.close();
  first.close();
  assert.equal((await fetch(`http://${address}/v2/`)).status, 200);
  assert.equal(await get(spec.port, "/index.html"), "own engine\n");

  second = await startContainers(options);
  assert.equal(
    readFileSync(join(engineDir, "dockerd.pid"), "utf8"),
    pid,
    "the same engine, not a second one",
  );
  assert.equal(second?.registry?.pid(), registryPid, "the same registry");
  const found = await second?.driver?.recover();
  assert.deepEqual(
    found?.map((p) => [p.id, p.state]),
    [["own1", "running"]],
  );
  assert.ok(await manifestDigest({ address }, BUILD_REPO, tags.tags[0]));
  t.after(() => second?.close());
});
