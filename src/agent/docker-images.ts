/**
 * Images on the engine besides building them: pulling what a container needs
 * (an `image:` of a registry, a build pulled by digest), pushing a build to
 * the local registry (registry.ts) so other nodes pull it instead of building
 * it, and collecting herd's built images nothing uses any more.
 */

import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import type { DockerApi } from "./docker-api.ts";
import type { RegistryAccess } from "./registry.ts";

/** The repository of built images, locally (`herd-build:<hash>`) and in the registry (`HOST:PORT/herd-build`). */
export const BUILD_REPO = "herd-build";

/**
 * The X-Registry-Auth header of a push or pull of `ref`: the local registry's
 * credential when `ref` names it, else an empty one (the engine wants the
 * header even for a registry without auth).
 */
function registryAuth(ref: string, registry: RegistryAccess | undefined): Record<string, string> {
  const mine = registry?.username !== undefined && ref.startsWith(`${registry.address}/`);
  const auth = mine
    ? { username: registry.username, password: registry.password ?? "", serveraddress: registry.address }
    : {};
  // URL-safe base64 with its padding: the engine's decoder (Go's base64.URLEncoding) wants the `=`.
  const encoded = Buffer.from(JSON.stringify(auth))
    .toString("base64")
    .replace(/\+/g, "-")
    .replace(/\//g, "_");
  return { "x-registry-auth": encoded };
}

/** `name[:tag][@digest]` split as the engine's pull wants it: the repository, and a tag or a digest. */
export function splitReference(ref: string): { repository: string; tag: string } {
  const at = ref.indexOf("@");
  if (at >= 0) return { repository: ref.slice(0, at), tag: ref.slice(at + 1) };
  const colon = ref.lastIndexOf(":");
  if (colon > ref.lastIndexOf("/")) return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repository: ref, tag: "latest" };
}

/** Whether the engine has the image `ref` (a name with tag, a name@digest or an id). */
export async function hasImage(api: DockerApi, ref: string): Promise<boolean> {
  try {
    await api.call({ path: `/images/${ref}/json` });
    return true;
  } catch (err) {
    if (err instanceof HerdError && err.code === "not_found") return false;
    throw err;
  }
}

/**
 * Pulls `ref` unless the engine has it (with the local registry's credential
 * when it names that registry); a failed pull names the image and the engine's message.
 */
export async function ensureImage(
  api: DockerApi,
  log: Logger,
  ref: string,
  registry?: RegistryAccess,
): Promise<void> {
  if (await hasImage(api, ref)) return;
  const { repository, tag } = splitReference(ref);
  log.info("pulling", { image: ref });
  const progress = await api.text({
    method: "POST",
    path: "/images/create",
    query: { fromImage: repository, tag },
    headers: registryAuth(ref, registry),
  });
  const failed = streamError(progress);
  if (failed) throw new HerdError("unavailable", `cannot pull ${ref}: ${failed}`);
}

/**
 * Pushes the local image `local` to `registry` as `HOST:PORT/herd-build:<tag>`
 * and returns the reference by digest it runs as (`HOST:PORT/herd-build@sha256:…`).
 */
export async function pushBuild(
  api: DockerApi,
  local: string,
  registry: RegistryAccess,
  tag: string,
): Promise<string> {
  const repository = `${registry.address}/${BUILD_REPO}`;
  await api.call({ method: "POST", path: `/images/${local}/tag`, query: { repo: repository, tag } });
  const progress = await api.text({
    method: "POST",
    path: `/images/${repository}/push`,
    query: { tag },
    headers: registryAuth(repository, registry),
  });
  const failed = streamError(progress);
  if (failed) throw new HerdError("unavailable", `cannot push ${local} to ${registry.address}: ${failed}`);
  // The last progress line's aux names the digest the registry stored.
  const digest = progressLines(progress)
    .map((l) => l.aux?.Digest)
    .findLast((d) => d !== undefined);
  if (!digest)
    throw new HerdError("unavailable", `the push of ${local} to ${registry.address} named no digest`);
  return `${repository}@${digest}`;
}

/**
 * Removes herd's built images (local `herd-build:` tags and pulled
 * `…/herd-build@` digests) that no container of the engine uses, in any
 * state, except the `keep` newest: the engine's side of collecting old
 * images. An image a container holds (a race with a start) stays.
 */
export async function collectImages(api: DockerApi, log: Logger, keep: number): Promise<string[]> {
  const images = await api.call<
    { Id: string; Created: number; RepoTags: string[] | null; RepoDigests: string[] | null }[]
  >({ path: "/images/json" });
  const used = new Set(
    (await api.call<{ ImageID: string }[]>({ path: "/containers/json", query: { all: "true" } })).map(
      (c) => c.ImageID,
    ),
  );
  const built = images
    .filter((i) =>
      [...(i.RepoTags ?? []), ...(i.RepoDigests ?? [])].some(
        (r) =>
          r.startsWith(`${BUILD_REPO}:`) || r.includes(`/${BUILD_REPO}@`) || r.includes(`/${BUILD_REPO}:`),
      ),
    )
    .sort((a, b) => b.Created - a.Created);
  const removed: string[] = [];
  for (const image of built.slice(keep)) {
    if (used.has(image.Id)) continue;
    try {
      await api.call({ method: "DELETE", path: `/images/${image.Id}`, query: { force: "true" } });
      removed.push(image.Id);
    } catch (err) {
      // A container took it meanwhile: it stays until the next collection. Another collection (the
      // driver's after a start) removed it first: the engine answers 500 "unrecognized image ID" then.
      const gone = err instanceof HerdError && /unrecognized image ID|no such image/i.test(err.message);
      if (!(err instanceof HerdError && (err.code === "conflict" || err.code === "not_found" || gone)))
        throw err;
    }
  }
  if (removed.length > 0) log.info("collected images", { removed: removed.length });
  return removed;
}

interface ProgressLine {
  error?: string;
  aux?: { Digest?: string };
}

function progressLines(text: string): ProgressLine[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as ProgressLine);
}

/** The engine answers 200 and streams JSON lines; a failure is a line with "error". */
function streamError(text: string): string | undefined {
  return progressLines(text).find((l) => l.error)?.error;
}
