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

/** A release dir is a slug: far below this. */
const MAX_BUILD_CONTEXT = 512 * 1024 * 1024;

/**
 * Builds the image of a release dir with a Dockerfile (its tarball is the
 * context) unless the engine has it already; RUN steps use the host's network.
 */
export async function buildReleaseImage(
  api: DockerApi,
  log: Logger,
  id: string,
  dir: string,
): Promise<string> {
  // Reproducible (names sorted, times and owners fixed): the same files make the same tag.
  const context = execFileSync(
    "tar",
    ["-C", dir, "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-c", "."],
    { maxBuffer: MAX_BUILD_CONTEXT },
  );
  const image = `herd-build:${createHash("sha256").update(context).digest("hex").slice(0, 16)}`;
  try {
    await api.call({ path: `/images/${image}/json` });
    return image;
  } catch (err) {
    if (!(err instanceof HerdError && err.code === "not_found")) throw err;
  }
  log.info("building", { id, image });
  const progress = await api.text({
    method: "POST",
    path: "/build",
    query: { t: image, networkmode: "host", rm: "true", forcerm: "true" },
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
  return image;
}
