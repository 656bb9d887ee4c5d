/**
 * `herd deploy` and `herd rollback`: start a deploy, then follow its log until
 * it ends.
 *
 *   DIR ─► loadAppDefinition (validate) ─► packDirectory ─► POST /apps/:app/deploys
 *        ─► GET /apps/:app/deploys/:id/log (NDJSON) ─► "-----> step", "       build line", done
 */

import { rm, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { formatDeployEntry } from "../common/deploy-log-format.ts";
import type { Deploy } from "../model/objects.ts";
import type { Preview } from "../model/pipeline.ts";
import { DEADLINE_HELP, parseDeadline } from "../model/rollout.ts";
import { type ApiClient, ApiError } from "./api-client.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { parseVersion, UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, type Output, println, stringFlag } from "./context.ts";
import { formatBytes } from "./format.ts";
import type { DeployLogEntry } from "./types.ts";

/** Uploads at least this big show a progress line on a terminal. */
const PROGRESS_THRESHOLD = 1024 * 1024;
/** How long to keep trying to reattach to a deploy log after the connection drops. */
const REATTACH_ATTEMPTS = 60;

/**
 * Follows a deploy's log to its end: prints each entry (or its JSON with
 * --json), reattaches when the connection drops, and returns 0 when the
 * deploy succeeded, 1 when it failed.
 */
export async function followDeploy(ctx: CliContext, client: ApiClient, deploy: Deploy): Promise<number> {
  const base = `/apps/${encodeURIComponent(deploy.app)}/deploys/${encodeURIComponent(deploy.id)}`;
  let printed = 0;
  let lost = false;
  for (let attempt = 0; attempt < REATTACH_ATTEMPTS; attempt++) {
    try {
      let seen = 0;
      for await (const entry of client.stream<DeployLogEntry>(`${base}/log`)) {
        // A reattached log starts from the beginning: skip what was shown.
        if (++seen <= printed) continue;
        printed++;
        if (lost) {
          ctx.stderr.write("herd: reconnected\n");
          lost = false;
        }
        if (entry.type === "done") return finish(ctx, entry.state, entry.message, entry);
        if (ctx.flags.json) ctx.stdout.write(`${JSON.stringify(entry)}\n`);
        else println(ctx.stdout, formatDeployEntry(entry));
      }
    } catch (err) {
      if (err instanceof ApiError && err.status > 0) throw err;
    }
    // The log ended without `done`, or the connection dropped: ask for the outcome.
    try {
      const current = await client.get<Deploy>(base);
      if (current.state === "succeeded" || current.state === "failed") {
        return finish(ctx, current.state, current.message, current);
      }
    } catch (err) {
      if (err instanceof ApiError && err.status > 0) throw err;
    }
    if (!lost) ctx.stderr.write("herd: lost the connection to the deploy log; reconnecting…\n");
    lost = true;
    await sleep(1000);
  }
  throw new Error(
    `gave up following deploy ${deploy.id}; it may still finish: see \`herd releases --app ${deploy.app}\``,
  );
}

function finish(ctx: CliContext, state: string | undefined, message: string, json: unknown): number {
  if (ctx.flags.json) ctx.stdout.write(`${JSON.stringify(json)}\n`);
  if (state === "succeeded") {
    if (!ctx.flags.json) println(ctx.stdout, `-----> ${message}`);
    return 0;
  }
  ctx.stderr.write(`herd: ${message || `deploy ${state ?? "ended without a result"}`}\n`);
  return 1;
}

/** Shows upload progress: an updating percentage on a terminal for big files, else one line. */
export function uploadProgress(out: Output, size: number): { update(sent: number): void; done(): void } {
  const live = Boolean(out.isTTY) && size >= PROGRESS_THRESHOLD;
  let last = 0;
  if (!live) out.write(`Uploading… ${formatBytes(size)}`);
  return {
    update(sent) {
      const now = Date.now();
      if (!live || (now - last < 100 && sent < size)) return;
      last = now;
      out.write(`\rUploading… ${Math.floor((sent / size) * 100)}% of ${formatBytes(size)}`);
    },
    done() {
      out.write(live ? `\rUploading… ${formatBytes(size)}, done\n` : ", done\n");
    },
  };
}

/** `herd deploy [DIR] [--app NAME] [--deadline 60s]`. */
export const deployCommand: CommandSpec = {
  name: "deploy",
  usage: "herd deploy [DIR] [--app NAME] [--deadline DURATION] [--preview NAME [--ttl DURATION]]",
  summary:
    "Validate, pack and upload DIR (default .), follow the build and rollout, and print the app's URL.\n" +
    "Exits 0 only when the new release serves. A rollout that cannot be placed on today's nodes fails\n" +
    "at once; one that makes no progress for its deadline fails then. Either way the old release keeps serving.",
  flags: [
    [
      "--app NAME",
      "the app (default: herd.yaml's `app:` in DIR, else DIR/package.json's name, else DIR's name)",
    ],
    [
      "--deadline DURATION",
      "fail the rollout after this long without progress, e.g. 60s or 5m (default: herd.yaml's rollout.deadline, else 120s)",
    ],
    ["--preview NAME", "deploy to the preview app <app>-NAME (created or renewed), destroyed after --ttl"],
    ["--ttl DURATION", "how long a preview lives, e.g. 30m or 24h (default 24h; 1s to 30 days)"],
  ],
  options: {
    app: { type: "string" },
    deadline: { type: "string" },
    preview: { type: "string" },
    ttl: { type: "string" },
  },
  async run(ctx, values, positionals) {
    if (positionals.length > 1) throw new UsageError("deploy takes one directory", "deploy");
    const deadline = stringFlag(values, "deadline");
    if (deadline !== undefined && parseDeadline(deadline) === undefined)
      throw new UsageError(`--deadline must be ${DEADLINE_HELP}, got ${deadline}`, "deploy");
    const dir = resolve(ctx.cwd, positionals[0] ?? ".");
    const info = await stat(dir).catch(() => undefined);
    if (!info?.isDirectory()) throw new Error(`${positionals[0] ?? "."}: no such directory`);

    // Validate locally first: a bad herd.yaml never leaves the machine.
    const { loadAppDefinition } = await import("../builder/detect.ts");
    const definition = await loadAppDefinition(dir, { app: stringFlag(values, "app") });
    const client = await ctx.client();
    const preview = stringFlag(values, "preview");
    const ttl = stringFlag(values, "ttl");
    if (ttl !== undefined && preview === undefined)
      throw new UsageError("--ttl goes with --preview", "deploy");
    if (preview !== undefined) {
      const p = await client.post<Preview>(`/apps/${encodeURIComponent(definition.app)}/previews`, {
        name: preview,
        ...(ttl !== undefined ? { ttl } : {}),
      });
      println(
        ctx.flags.json ? ctx.stderr : ctx.stdout,
        `-----> Preview ${p.name} of ${p.of}: app ${p.app}, destroyed at ${p.expiresAt}`,
      );
      definition.app = p.app;
    }
    await checkDependsOn(client, definition.app, definition.services);

    const { packDirectory } = await import("../builder/pack.ts");
    const progressOut = ctx.flags.json ? ctx.stderr : ctx.stdout;
    const packed = await packDirectory(dir);
    let deploy: Deploy;
    let uploading = false;
    try {
      println(progressOut, `Packing… ${packed.files} files, ${formatBytes(packed.size)}`);
      const progress = uploadProgress(progressOut, packed.size);
      uploading = true;
      deploy = await client.upload<Deploy>(
        `/apps/${encodeURIComponent(definition.app)}/deploys${deadline === undefined ? "" : `?deadline=${encodeURIComponent(deadline)}`}`,
        { path: packed.file, size: packed.size, contentType: "application/gzip" },
        (sent) => progress.update(sent),
      );
      progress.done();
    } catch (err) {
      if (uploading) progressOut.write("\n");
      throw err;
    } finally {
      await rm(packed.file, { force: true });
    }
    if (ctx.flags.json) ctx.stdout.write(`${JSON.stringify(deploy)}\n`);
    else println(ctx.stdout, `-----> Deploying ${definition.app} (deploy ${deploy.id})`);
    return followDeploy(ctx, client, deploy);
  },
};

/** `herd rollback [vN] [--app NAME]`. */
export const rollbackCommand: CommandSpec = {
  name: "rollback",
  usage: "herd rollback [vN] [--app NAME]",
  summary:
    "Roll back to release vN (default: the one before the current), as a new release, and follow the rollout.",
  flags: [APP_FLAG_HELP],
  options: { app: { type: "string" } },
  async run(ctx, values, positionals) {
    if (positionals.length > 1) throw new UsageError("rollback takes at most one version", "rollback");
    const version = positionals[0] === undefined ? undefined : parseVersion(positionals[0], "rollback");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "rollback");
    const client = await ctx.client();
    const deploy = await client.post<Deploy>(
      `/apps/${encodeURIComponent(app)}/rollback`,
      version ? { version } : {},
    );
    if (ctx.flags.json) ctx.stdout.write(`${JSON.stringify(deploy)}\n`);
    else
      println(
        ctx.stdout,
        `-----> Rolling back ${app}${version ? ` to v${version}` : ""} (deploy ${deploy.id})`,
      );
    return followDeploy(ctx, client, deploy);
  },
};

/**
 * dependsOn naming another app's service, checked by the server before the
 * upload: an unknown service or a cycle with the tenant's apps is a 400 here,
 * not a failed build. A server without the check (404) checks at release.
 */
async function checkDependsOn(
  client: ApiClient,
  app: string,
  services: Record<string, { dependsOn?: string[] }>,
): Promise<void> {
  const declared = Object.entries(services).filter(([, s]) => s.dependsOn?.length);
  if (declared.length === 0) return;
  try {
    await client.post(`/apps/${encodeURIComponent(app)}/dependencies/check`, {
      services: Object.fromEntries(
        Object.entries(services).map(([n, s]) => [n, { dependsOn: s.dependsOn ?? [] }]),
      ),
    });
  } catch (err) {
    if ((err as { code?: string }).code !== "not_found") throw err;
  }
}
