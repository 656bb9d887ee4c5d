/** Which app a command is about: --app, else the app ./herd.yaml names. */

import { access } from "node:fs/promises";
import { join } from "node:path";
import { UsageError } from "./args.ts";
import type { CliContext } from "./context.ts";

/**
 * The app to act on: the --app flag when given, else the app of the
 * herd.yaml in the current directory, else a UsageError saying to pass --app.
 */
export async function resolveApp(
  ctx: CliContext,
  flag: string | undefined,
  command: string,
): Promise<string> {
  if (flag) return flag;
  const file = join(ctx.cwd, "herd.yaml");
  try {
    await access(file);
  } catch {
    throw new UsageError("which app? pass --app NAME (or run this where a herd.yaml names the app)", command);
  }
  const { loadAppDefinition } = await import("../build/detect.ts");
  try {
    return (await loadAppDefinition(ctx.cwd)).app;
  } catch (err) {
    throw new UsageError(
      `which app? ./herd.yaml could not be read (${(err as Error).message}): pass --app NAME`,
      command,
    );
  }
}
