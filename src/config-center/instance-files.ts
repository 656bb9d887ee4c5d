/**
 * An instance's config on disk, as its agent writes it into the instance's
 * config dir (root's, beside its app dir: agent-layout.ts configDir; bound
 * where the app can read it, inside the sandbox or a container):
 *
 *   <dir>/config.json      {version, values, files: {name: format}, origins}   HERD_CONFIG_FILE
 *   <dir>/files/<name>     each file entry's content                         HERD_CONFIG_DIR
 *
 * Every file is written to a temporary name and renamed over the old one, so
 * a reader sees the old or the new content, never half of it. The file
 * entries go first and config.json last: once config.json says version V,
 * the files of V are in place. Files V no longer has are removed after.
 */

import { createHmac } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ConfigFormat, EffectiveConfig } from "../model/config.ts";

/** Writes `doc` into `dir` (see the top of this file); readable by the instance's uid. */
export async function writeInstanceConfig(dir: string, doc: EffectiveConfig): Promise<void> {
  const filesDir = join(dir, "files");
  await mkdir(filesDir, { recursive: true, mode: 0o755 });
  for (const [name, f] of Object.entries(doc.files)) await atomicWrite(join(filesDir, name), f.content);
  const summary = {
    app: doc.app,
    version: doc.version,
    values: doc.values,
    files: Object.fromEntries(Object.entries(doc.files).map(([n, f]) => [n, f.format])),
    origins: doc.origins,
  };
  await atomicWrite(join(dir, "config.json"), `${JSON.stringify(summary, null, 2)}\n`);
  for (const name of await readdir(filesDir)) {
    if (!(name in doc.files)) await rm(join(filesDir, name), { force: true });
  }
}

async function atomicWrite(file: string, content: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await writeFile(tmp, content, { mode: 0o644 });
  await rename(tmp, file);
}

/** The key of an instance's feed channel: an HMAC of its id under the agent's feed secret. */
export function feedKey(secret: string, id: string): string {
  return createHmac("sha256", secret).update(id).digest("base64url").slice(0, 32);
}

/** The config written in `dir` for app `app` of `tenant`, read back (an agent that adopts an instance); undefined when absent or broken. */
export async function readInstanceConfig(dir: string, tenant: string): Promise<EffectiveConfig | undefined> {
  try {
    const summary = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as {
      app: string;
      version: number;
      values: Record<string, string>;
      files: Record<string, ConfigFormat>;
      origins: Record<string, string>;
    };
    const files: EffectiveConfig["files"] = {};
    for (const [name, format] of Object.entries(summary.files)) {
      files[name] = { format, content: await readFile(join(dir, "files", name), "utf8") };
    }
    return {
      tenant,
      app: summary.app,
      version: summary.version,
      values: summary.values,
      files,
      origins: summary.origins,
    };
  } catch {
    return undefined;
  }
}

/** The document of an app with no config yet: version 0, nothing in it. */
export const emptyConfig = (tenant: string, app: string): EffectiveConfig => ({
  tenant,
  app,
  version: 0,
  values: {},
  files: {},
  origins: {},
});
