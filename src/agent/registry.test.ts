/**
 * The local registry with two real engines: a build is pushed once and the
 * other engine pulls it by digest instead of building; old builds are
 * collected from the engine and from the registry. Two private dockerds and
 * a docker-registry under temp dirs, all stopped and removed at the end.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import { silentLogger } from "../common/log.ts";
import { type Dockerd, ensureBaseImage, startDockerd } from "./docker-daemon.ts";
import { DockerDriver } from "./docker-driver.ts";
import { BUILD_REPO, collectImages } from "./docker-images.ts";
import { freePort, get, harness, waitFor } from "./driver.case.test.ts";
import { manifestDigest, type Registry, startRegistry } from "./registry.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-registry-"));
let builder: Dockerd | undefined;
let puller: Dockerd | undefined;
let registry: Registry | undefined;
let baseImage = "";
let busybox = "";

before(async () => {
  const tools = await ensureDebianPackages({
    dockerd: "docker.io",
    busybox: "busybox-static",
    "docker-registry": "docker-registry",
  });
  busybox = tools.busybox;
  registry = await startRegistry(join(dir, "registry"), {
    listen: `127.0.0.1:${await freePort()}`,
    binary: tools["docker-registry"],
  });
  [builder, puller] = await Promise.all([
    startDockerd(join(dir, "builder"), tools.dockerd),
    startDockerd(join(dir, "puller"), tools.dockerd),
  ]);
  // Only the builder has the base image: the puller can run the build only by pulling it.
  baseImage = await ensureBaseImage(builder.api, busybox);
});

after(async () => {
  try {
    await Promise.all([builder?.stop(), puller?.stop(), registry?.stop()]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function driverOn(engine: Dockerd | undefined, keepImages = 3) {
  return (stateRoot: string) => {
    if (!engine || !registry) throw new Error("not started");
    return new DockerDriver({
      stateRoot,
      api: engine.api,
      baseImage,
      busybox,
      registry: registry.access,
      keepImages,
    });
  };
}

const images = async (engine: Dockerd | undefined) =>
  (await engine?.api.call<{ Id: string; RepoTags: string[] | null; RepoDigests: string[] | null }[]>({
    path: "/images/json",
  })) ?? [];

async function imageOf(engine: Dockerd | undefined, id: string): Promise<string> {
  const [c] =
    (await engine?.api.call<{ Image: string }[]>({
      path: "/containers/json",
      query: { all: "true", filters: JSON.stringify({ label: [`herd.id=${id}`] }) },
    })) ?? [];
  return c?.Image ?? "";
}

const DOCKERFILE = (text: string) =>
  `FROM herd-base\nRUN mkdir /www && echo ${text} > /www/index.html\nCMD httpd -f -p $PORT -h /www\n`;

test("a build is pushed to the registry and runs by digest; another engine pulls it instead of building it", async (t) => {
  const address = registry?.address ?? "";
  const onBuilder = harness(t, driverOn(builder));
  const first = await onBuilder.spec("reg1", "");
  writeFileSync(join(first.dir, "Dockerfile"), DOCKERFILE("pushed once"));
  await onBuilder.driver().start(first);
  assert.equal(await waitFor(() => get(first.port, "/index.html"), "the build to answer"), "pushed once\n");
  const ref = await imageOf(builder, "reg1");
  assert.match(ref, new RegExp(`^${address}/${BUILD_REPO}@sha256:[0-9a-f]{64}$`));

  const onPuller = harness(t, driverOn(puller));
  const second = await onPuller.spec("reg2", "");
  writeFileSync(join(second.dir, "Dockerfile"), DOCKERFILE("pushed once"));
  await onPuller.driver().start(second);
  assert.equal(
    await waitFor(() => get(second.port, "/index.html"), "the pulled image to answer"),
    "pushed once\n",
  );
  assert.equal(await imageOf(puller, "reg2"), ref, "the same digest");
  const tags = (await images(puller)).flatMap((i) => i.RepoTags ?? []);
  assert.deepEqual(
    tags.filter((tag) => tag.startsWith("herd-")),
    [],
    "the puller built nothing and has no base image",
  );
});

test("old builds are collected from the engine and from the registry; what runs and what is kept stay", async (t) => {
  const address = registry?.address ?? "";
  const h = harness(t, driverOn(builder, 1));
  const driver = h.driver();
  const refs: string[] = [];
  for (const n of [1, 2, 3]) {
    const spec = await h.spec(`old${n}`, "");
    writeFileSync(
      join(spec.dir, "Dockerfile"),
      `${DOCKERFILE(`version ${n}`)}RUN head -c 300000 /dev/urandom > /www/noise\n`,
    );
    await driver.start(spec);
    refs.push(await imageOf(builder, `old${n}`));
    if (n < 3) {
      await driver.stop(`old${n}`, 0);
      await driver.remove(`old${n}`);
    }
  }
  // Every start of a build collects; the last one keeps one image besides those containers use.
  const left = await collectImages(builder?.api as Dockerd["api"], silentLogger, 1);
  const built = (await images(builder)).filter((i) =>
    [...(i.RepoTags ?? []), ...(i.RepoDigests ?? [])].some((r) => r.includes(BUILD_REPO)),
  );
  const digests = built.flatMap((i) => i.RepoDigests ?? []);
  assert.ok(digests.includes(refs[2]), `the running build stays: ${digests}`);
  assert.ok(!digests.includes(refs[0]), `the oldest is collected: ${digests} (${left})`);

  const tagOf = async (ref: string) => {
    const all = (await (await fetch(`http://${address}/v2/${BUILD_REPO}/tags/list`)).json()) as {
      tags: string[];
    };
    for (const tag of all.tags ?? [])
      if (ref.endsWith((await manifestDigest({ address }, BUILD_REPO, tag)) ?? "-")) return tag;
    return undefined;
  };
  const keepTag = await tagOf(refs[2]);
  assert.ok(keepTag);
  const collected = await registry?.collect((_repo, tag) => tag === keepTag);
  assert.ok((collected?.deleted.length ?? 0) >= 2, JSON.stringify(collected));
  assert.ok((collected?.freedBytes ?? 0) > 0, JSON.stringify(collected));
  assert.ok(await manifestDigest({ address }, BUILD_REPO, keepTag), "the kept tag is still there");
  const blob = refs[0].split("@")[1];
  const gone = await fetch(`http://${address}/v2/${BUILD_REPO}/manifests/${blob}`, { method: "HEAD" });
  assert.equal(gone.status, 404, "the collected build's manifest is gone");
  // The registry serves again after its collection: the running build is still pullable.
  const res = await fetch(`http://${address}/v2/`);
  assert.equal(res.status, 200);
});
