/**
 * examples/hello, deployed by `herd up` on its first start. herd up loads this
 * module only then, and it calls the API with `node:http` (api-request.ts):
 * the global `fetch` would keep Node's bundled undici (about 12 MB) in herd
 * up's process for good.
 */

import { readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { packDirectory } from "../builder/pack.ts";
import { apiRequest } from "../common/api-request.ts";
import type { Logger } from "../common/log.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Deploys examples/hello through the API, as `herd deploy` would; `ca` is herd's, when the API is https. */
export async function deployExample(
  url: string,
  token: string,
  logger: Logger,
  ca?: string,
): Promise<boolean> {
  const dir = join(ROOT, "examples", "hello");
  const log = logger.child("example");
  try {
    const pack = await packDirectory(dir);
    try {
      const res = await apiRequest(`${url}/api/v1/apps/hello/deploys`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/gzip" },
        body: readFileSync(pack.file),
        ca,
      });
      if (!res.ok) throw new Error(`deploy of examples/hello refused: ${await res.text()}`);
      const deploy = (await res.json()) as { id: string };
      log.info("deploying examples/hello", { deploy: deploy.id });
      const follow = await apiRequest(`${url}/api/v1/apps/hello/deploys/${deploy.id}/log`, {
        headers: { authorization: `Bearer ${token}` },
        ca,
      });
      const text = await follow.text();
      const done = text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { type: string; state?: string; message: string })
        .find((e) => e.type === "done");
      if (done?.state !== "succeeded")
        throw new Error(`deploy of examples/hello failed: ${done?.message ?? "no result"}`);
      return true;
    } finally {
      rmSync(pack.file, { force: true });
    }
  } catch (err) {
    log.error("could not deploy examples/hello", { err });
    return false;
  }
}
