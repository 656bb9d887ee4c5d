/**
 * A run's exit code kept on disk, for when no agent is its parent. The
 * control plane wraps a run's command (controllers/jobs.ts `recordingExit`)
 * so its shell writes the code to `$HERD_DATA_DIR/.herd-exit-code` as it
 * ends; an agent that adopted the run after a restart (and so cannot learn
 * the code from the kernel) reads it from there.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { EXIT_CODE_FILE } from "../model/job.ts";

/** The exit code a run recorded in `dataDir`, or null when it recorded none (an instance, or a run killed by a signal). */
export async function recordedExitCode(dataDir: string): Promise<number | null> {
  try {
    const text = (await readFile(join(dataDir, EXIT_CODE_FILE), "utf8")).trim();
    return /^\d{1,3}$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}
