/**
 * Which app a command is about: --app, else the app this directory deploys
 * as, by the rule `herd deploy` names apps with (builder/detect.ts): herd.yaml's
 * `app:`, else package.json's name, else the directory's name.
 */

import { join } from "node:path";
import { pathExists } from "../common/path-exists.ts";
import { UsageError } from "./args.ts";
import type { CliContext } from "./context.ts";

/** The help line of `--app` for commands that act on an app. */
export const APP_FLAG_HELP: [string, string] = [
  "--app NAME",
  "the app (default: the one this directory deploys as: herd.yaml's `app:`, else package.json's name, else the directory's)",
];

/**
 * The app to act on: the --app flag when given, else the app the current
 * directory deploys as (when it holds an app's files), else a UsageError
 * saying to pass --app.
 */
export async function resolveApp(
  ctx: CliContext,
  flag: string | undefined,
  command: string,
): Promise<string> {
  if (flag) return flag;
  const found = await Promise.all(APP_FILES.map((f) => pathExists(join(ctx.cwd, f))));
  if (!found.includes(true)) {
    throw new UsageError(
      `which app? pass --app NAME (or run this in an app's directory: one with a ${APP_FILES.slice(0, -1).join(", ")} or ${APP_FILES.at(-1)})`,
      command,
    );
  }
  const { loadAppDefinition } = await import("../builder/detect.ts");
  try {
    return (await loadAppDefinition(ctx.cwd)).app;
  } catch (err) {
    throw new UsageError(`which app? ${(err as Error).message}; or pass --app NAME`, command);
  }
}

/** The files that make a directory an app's (builder/detect.ts looks at them). */
const APP_FILES = ["herd.yaml", "herd.yml", "package.json", "Procfile", "server.js", "index.html"];
