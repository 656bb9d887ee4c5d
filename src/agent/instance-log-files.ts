/**
 * An instance's two log files in its state dir (INSTANCE_LOG, INSTANCE_ERR_LOG),
 * as every driver writes them: the tail a crash report shows, and the
 * copy-and-truncate rotation that keeps them bounded.
 */

import { copyFileSync, statSync, truncateSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { INSTANCE_ERR_LOG, INSTANCE_LOG } from "./driver.ts";

/**
 * The last `lines` lines of an instance's output: stdout's, then stderr's;
 * each stream keeps at least half of the room when both have that much to say.
 */
export async function tailInstanceLogs(stateDir: string, lines: number): Promise<string[]> {
  const [out, err] = await Promise.all([
    tailRotated(join(stateDir, INSTANCE_LOG), lines),
    tailRotated(join(stateDir, INSTANCE_ERR_LOG), lines),
  ]);
  const outCount = Math.min(out.length, Math.max(lines - err.length, Math.floor(lines / 2)));
  const errCount = Math.min(err.length, lines - outCount);
  return [...out.slice(out.length - outCount), ...err.slice(err.length - errCount)];
}

/**
 * Rotates each of the instance's logs that passed maxBytes to `<file>.1` by
 * copy-and-truncate: the writers hold O_APPEND fds, so after truncation they
 * continue at offset 0. Calls onError for a failure other than a missing file.
 */
export function rotateInstanceLogs(
  stateDir: string,
  maxBytes: number,
  onError: (file: string, err: unknown) => void,
): void {
  for (const name of [INSTANCE_LOG, INSTANCE_ERR_LOG]) {
    const log = join(stateDir, name);
    try {
      if (statSync(log).size <= maxBytes) continue;
      copyFileSync(log, `${log}.1`);
      truncateSync(log, 0);
    } catch (err) {
      // An instance started before stderr had its own file has none.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      onError(name, err);
    }
  }
}

const TAIL_CHUNK = 64 * 1024;

/** The last `lines` lines of a log and, when it has fewer, of its rotated copy before them. */
async function tailRotated(log: string, lines: number): Promise<string[]> {
  const current = await tailFile(log, lines);
  if (current.length >= lines) return current;
  const rotated = await tailFile(`${log}.1`, lines - current.length);
  return [...rotated, ...current];
}

/** The last `lines` lines of a file ([] when it does not exist), reading only its end. */
async function tailFile(file: string, lines: number): Promise<string[]> {
  if (lines <= 0) return [];
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    return [];
  }
  const handle = await open(file, "r");
  try {
    let start = size;
    let bytes = Buffer.alloc(0);
    let found: string[] = [];
    while (start > 0) {
      const length = Math.min(TAIL_CHUNK, start);
      start -= length;
      const buf = Buffer.alloc(length);
      await handle.read(buf, 0, length, start);
      // Decode only whole buffers, so a character split across two chunks stays intact.
      bytes = Buffer.concat([buf, bytes]);
      found = bytes.toString("utf8").split("\n");
      if (found[found.length - 1] === "") found.pop();
      // The first piece may be the end of a longer line unless the read reached the file's start.
      if (found.length > lines) break;
    }
    if (start > 0) found.shift();
    return found.slice(-lines);
  } finally {
    await handle.close();
  }
}
