/**
 * A run's exit code kept on disk, for when no agent is its parent. The
 * control plane wraps a run's command (controllers/jobs.ts `recordingExit`)
 * so its shell writes the code to `$HERD_DATA_DIR/.herd-exit-code` as it
 * ends; an agent that adopted the run after a restart (and so cannot learn
 * the code from the kernel) reads it from there.
 *
 * The data dir is the run's own: the file may be anything it made (a link to
 * a file of root's, a FIFO, a link to /dev/zero), so it is opened as
 * openRegular opens logs and at most a few bytes are read.
 */

import { join } from "node:path";
import { EXIT_CODE_FILE } from "../model/job.ts";
import { openRegular } from "./instance-log-files.ts";

/** The exit code a run recorded in `dataDir`, or null when it recorded none (an instance, or a run killed by a signal). */
export async function recordedExitCode(dataDir: string): Promise<number | null> {
  const handle = await openRegular(join(dataDir, EXIT_CODE_FILE));
  if (!handle) return null;
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString("utf8").trim();
    return /^\d{1,3}$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  } finally {
    await handle.close();
  }
}
