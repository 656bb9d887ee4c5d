/**
 * The image of a release dir with a Dockerfile, built with the node's engine
 * (docs/containers.md): the dir's reproducible tarball is the context, its
 * hash the tag, so the same files are built once per engine.
 */

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import type { DockerApi } from "./docker-api.ts";
import { BUILD_REPO, ensureImage, hasImage, pushBuild } from "./docker-images.ts";
import { manifestDigest, type RegistryAccess } from "./registry.ts";

/** A release dir is a slug: far below this. */
const MAX_BUILD_CONTEXT = 512 * 1024 * 1024;

/**
 * The image of a release dir with a Dockerfile (its tarball is the context),
 * built unless the engine has it already. Its RUN steps use the network
 * `network` lends for the build (the driver's build sandbox: a container on
 * herd's bridge, behind the firewall between containers), given as the
 * build's network mode.
 * With a `registry` (host:port, registry.ts) the build is looked up there
 * first by the same tag and pulled by digest when another node built it;
 * otherwise it is built here and pushed. Returns the reference to run:
 * `HOST:PORT/herd-build@sha256:…` with a registry, `herd-build:<hash>` without.
 */
export async function buildReleaseImage(
  api: DockerApi,
  log: Logger,
  id: string,
  dir: string,
  network: <T>(build: (networkMode: string) => Promise<T>) => Promise<T>,
  registry?: RegistryAccess,
): Promise<string> {
  // Reproducible (names sorted, times and owners fixed): the same files make the same tag.
  const context = execFileSync(
    "tar",
    ["-C", dir, "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-c", "."],
    { maxBuffer: MAX_BUILD_CONTEXT },
  );
  const tag = createHash("sha256").update(context).digest("hex").slice(0, 16);
  if (registry) {
    const digest = await manifestDigest(registry, BUILD_REPO, tag);
    if (digest) {
      const ref = `${registry.address}/${BUILD_REPO}@${digest}`;
      await ensureImage(api, log, ref, registry);
      return ref;
    }
  }
  const image = `${BUILD_REPO}:${tag}`;
  if (!(await hasImage(api, image))) await network((mode) => build(api, log, id, image, context, mode));
  return registry ? pushBuild(api, image, registry, tag) : image;
}

async function build(
  api: DockerApi,
  log: Logger,
  id: string,
  image: string,
  context: Buffer,
  networkMode: string,
): Promise<void> {
  log.info("building", { id, image, networkMode });
  const progress = await api.text({
    method: "POST",
    path: "/build",
    query: { t: image, networkmode: networkMode, rm: "true", forcerm: "true" },
    body: Readable.from([context]),
  });
  // The engine answers 200 and streams JSON lines; a failed step is a line with "error".
  const lines = progress
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { stream?: string; error?: string });
  const failed = lines.find((l) => l.error);
  if (failed) {
    const output = lines
      .map((l) => l.stream ?? "")
      .join("")
      .trim()
      .split("\n")
      .slice(-10)
      .join("\n");
    throw new HerdError("invalid", `the Dockerfile of ${id} did not build: ${failed.error}\n${output}`);
  }
}
