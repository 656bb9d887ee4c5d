/**
 * Following an instance's log files: the lines appended since the last read,
 * stdout and stderr apart, across a copy-and-truncate rotation.
 */

import { join } from "node:path";
import { INSTANCE_ERR_LOG, INSTANCE_LOG } from "./driver.ts";
import { logSize, readLogRange } from "./instance-log-files.ts";

/** The two log files of an instance, followed separately so each line keeps its stream. */
export class InstanceLogs {
  readonly stdout: LogFollower;
  readonly stderr: LogFollower;

  constructor(stateDir: string) {
    this.stdout = new LogFollower(join(stateDir, INSTANCE_LOG));
    this.stderr = new LogFollower(join(stateDir, INSTANCE_ERR_LOG));
  }

  /** Starts following both from their current ends. */
  async skipToEnd(): Promise<void> {
    await this.stdout.skipToEnd();
    await this.stderr.skipToEnd();
  }
}

/**
 * Reads new lines appended to an instance's log. A file shorter than what was
 * read means it was rotated (copy-and-truncate): the rest of the copy in `.1`
 * is read first.
 */
class LogFollower {
  readonly #file: string;
  #offset = 0;
  #partial = Buffer.alloc(0);
  /** The read under way: reads run one after another (the ship timer's and a removal's last one). */
  #reading: Promise<unknown> = Promise.resolve();

  constructor(file: string) {
    this.#file = file;
  }

  /** Starts following from the current end (earlier output is not shipped again). */
  async skipToEnd(): Promise<void> {
    this.#offset = await logSize(this.#file);
    this.#partial = Buffer.alloc(0);
  }

  /**
   * Complete lines appended since the last read (a very long unterminated line
   * is cut into pieces). A read waits for the one under way: two at once took
   * the same offset and shipped the same lines twice.
   */
  read(): Promise<string[]> {
    const lines = this.#reading.then(() => this.#read());
    this.#reading = lines.catch(() => undefined);
    return lines;
  }

  async #read(): Promise<string[]> {
    const size = await logSize(this.#file);
    const chunks: Buffer[] = [];
    if (size < this.#offset) {
      const rotatedSize = await logSize(`${this.#file}.1`);
      // At most MAX_READ of it, as of the current file: an app can make its log any size (ftruncate).
      if (rotatedSize > this.#offset)
        chunks.push(
          await readLogRange(`${this.#file}.1`, this.#offset, Math.min(rotatedSize, this.#offset + MAX_READ)),
        );
      this.#offset = 0;
    }
    if (size > this.#offset) {
      const end = Math.min(size, this.#offset + MAX_READ);
      chunks.push(await readLogRange(this.#file, this.#offset, end));
      this.#offset = end;
    }
    if (chunks.length === 0) return [];
    const bytes = Buffer.concat([this.#partial, ...chunks]);
    const lastNewline = bytes.lastIndexOf(10);
    if (lastNewline < 0 && bytes.length < MAX_LINE) {
      this.#partial = bytes;
      return [];
    }
    const cut = lastNewline < 0 ? bytes.length : lastNewline + 1;
    this.#partial = bytes.subarray(cut);
    const lines = bytes.subarray(0, cut).toString("utf8").replace(/\n$/, "").split("\n");
    // The server takes lines up to 64 Ki characters: longer ones go in pieces.
    return lines.some((l) => l.length > MAX_LINE) ? lines.flatMap(piecesOf) : lines;
  }
}

const MAX_READ = 1024 * 1024;
const MAX_LINE = 64 * 1024;

function piecesOf(line: string): string[] {
  if (line.length <= MAX_LINE) return [line];
  const pieces: string[] = [];
  for (let i = 0; i < line.length; i += MAX_LINE) pieces.push(line.slice(i, i + MAX_LINE));
  return pieces;
}
