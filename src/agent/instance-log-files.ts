/**
 * An instance's two log files in its state dir (INSTANCE_LOG, INSTANCE_ERR_LOG),
 * as every driver writes them: the tail a crash report shows, and the
 * copy-and-truncate rotation that keeps them bounded.
 *
 * The agent (root) opens them without following a symlink and only when
 * they are regular files: a container sees its state dir (the docker
 * driver binds it), and a symlink put there in place of `output.log.1` or
 * `output.log` would have the agent read, write or truncate a host file of
 * the instance's choosing; a FIFO would hang the reader.
 */

import {
  closeSync,
  constants,
  fchownSync,
  fstatSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readSync,
  rmSync,
  type Stats,
  writeFileSync,
  writeSync,
} from "node:fs";
import { type FileHandle, lstat, open } from "node:fs/promises";
import { join } from "node:path";
import { INSTANCE_ERR_LOG, INSTANCE_LOG } from "./driver.ts";

const NO_FOLLOW = constants.O_NOFOLLOW | constants.O_NONBLOCK;
/** How much of a log past maxBytes its rotation keeps, in maxBytes (a second's output of a chatty app). */
const KEEP_ROTATED = 4;

/**
 * A file an instance may have made or replaced (its logs, its exit code), opened to read: never
 * through a link, never waiting on a FIFO; undefined when it is missing or not a regular file.
 */
export async function openRegular(file: string): Promise<FileHandle | undefined> {
  const handle = await open(file, constants.O_RDONLY | NO_FOLLOW).catch(() => undefined);
  if (handle && !(await handle.stat()).isFile()) {
    await handle.close();
    return undefined;
  }
  return handle;
}

/** The size of a log file of the state dir; 0 when it is missing or not a regular file. */
export async function logSize(file: string): Promise<number> {
  const s = await lstat(file).catch(() => undefined);
  return s?.isFile() ? s.size : 0;
}

/** Bytes start..end of a log file of the state dir (fewer at its end; none when it is not a regular file). */
export async function readLogRange(file: string, start: number, end: number): Promise<Buffer> {
  const handle = await openRegular(file);
  if (!handle) return Buffer.alloc(0);
  try {
    const buf = Buffer.alloc(end - start);
    const { bytesRead } = await handle.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * Makes the instance's two log files (kept when they are there) and gives
 * them to `uid`, for a container that runs as that uid in a state dir it
 * cannot write: it appends to its logs and can put nothing beside them.
 */
export function prepareLogs(stateDir: string, uid: number): void {
  for (const name of [INSTANCE_LOG, INSTANCE_ERR_LOG]) {
    const log = join(stateDir, name);
    // Anything else of that name (a link an earlier root container left) goes.
    const found = lstatOrUndefined(log);
    if (found && !found.isFile()) rmSync(log, { force: true });
    const fd = openSync(log, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | NO_FOLLOW, 0o600);
    try {
      fchownSync(fd, uid, uid);
    } finally {
      closeSync(fd);
    }
  }
}

function lstatOrUndefined(file: string): Stats | undefined {
  try {
    return lstatSync(file);
  } catch {
    return undefined;
  }
}

/** Creates an empty marker file in a state dir, where a symlink of that name is removed, never followed. */
export function writeMarker(file: string): void {
  rmSync(file, { force: true });
  writeFileSync(file, "", { flag: "wx", mode: 0o644 });
}

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
    let from: number | undefined;
    try {
      from = openSync(log, constants.O_RDWR | NO_FOLLOW);
      const s = fstatSync(from);
      if (!s.isFile()) throw new Error(`${name} is not a regular file`);
      if (s.size <= maxBytes) continue;
      // At most its last KEEP_ROTATED × maxBytes: an app can make its log any size at once (an ftruncate
      // of its own fd, sparse), and a copy of all of it would hold the event loop and fill the disk.
      const keep = KEEP_ROTATED * maxBytes;
      copyInto(from, `${log}.1`, s.size > keep ? s.size - keep : 0, s.size);
      ftruncateSync(from, 0);
    } catch (err) {
      // An instance started before stderr had its own file has none.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      onError(name, err);
    } finally {
      if (from !== undefined) closeSync(from);
    }
  }
}

/** Copies bytes start..end of the open file `from` into a new `to` (whatever was at `to`, a symlink too, is removed first). */
function copyInto(from: number, to: string, start: number, end: number): void {
  rmSync(to, { force: true });
  const out = openSync(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NO_FOLLOW, 0o600);
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let at = start; at < end; ) {
      const n = readSync(from, buf, 0, Math.min(buf.length, end - at), at);
      if (n === 0) break;
      writeSync(out, buf, 0, n);
      at += n;
    }
  } finally {
    closeSync(out);
  }
}

const TAIL_CHUNK = 64 * 1024;
/** How far from its end a tail reads: a line longer than this is cut (an app may write one line of gigabytes). */
const TAIL_MAX = 256 * 1024;

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
  const handle = await openRegular(file);
  if (!handle) return [];
  try {
    const size = (await handle.stat()).size;
    let start = size;
    let bytes = Buffer.alloc(0);
    let found: string[] = [];
    while (start > 0 && size - start < TAIL_MAX) {
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
