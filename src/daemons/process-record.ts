/**
 * A process that outlives the one that started it, found again by a file:
 * its pid and its start time (field 22 of /proc/<pid>/stat), as the process
 * driver records instances. The start time tells our process from a later one
 * that got the same pid after ours died.
 *
 *   write ──► <file> {pid, procStartTime, …} ──► read ──► isRunning? ──► adopt, or stopProcess
 */

import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";

/** What every record holds; callers add their own fields. */
export interface ProcessRecord {
  pid: number;
  /** Field 22 of /proc/<pid>/stat when the record was written. */
  procStartTime: string;
}

/** The start time of a live (not zombie) process, or undefined when there is none with that pid. */
export function procStartTime(pid: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parens; the fields after its last ')' are fixed.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  if (fields[0] === "Z" || fields[0] === "X") return undefined;
  return fields[19];
}

/** A record of `pid` as it is now (throws when that process is gone). */
export function recordOf(pid: number): ProcessRecord {
  const started = procStartTime(pid);
  if (started === undefined) throw new Error(`process ${pid} is gone`);
  return { pid, procStartTime: started };
}

/** Whether the recorded process is still the one running under its pid. */
export function isRunning(record: ProcessRecord): boolean {
  return procStartTime(record.pid) === record.procStartTime;
}

/** Reads a record; undefined when the file is missing or is not one. */
export function readRecord<T extends ProcessRecord>(file: string): T | undefined {
  try {
    const record = JSON.parse(readFileSync(file, "utf8")) as T;
    return typeof record.pid === "number" && typeof record.procStartTime === "string" ? record : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a record whole (temp file + rename): a crash never leaves half of one. */
export function writeRecord(file: string, record: ProcessRecord): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(temp, file);
}

/** Removes the record, unless it names another process by now (a successor wrote its own). */
export function removeRecord(file: string, record: ProcessRecord): void {
  const current = readRecord(file);
  if (current === undefined || (current.pid === record.pid && current.procStartTime === record.procStartTime))
    rmSync(file, { force: true });
}

/**
 * SIGTERM to the recorded process, then SIGKILL (to its process group too,
 * when it leads one) after `graceMs`; resolves once it is gone.
 */
export async function stopProcess(record: ProcessRecord, graceMs: number): Promise<void> {
  if (!isRunning(record)) return;
  signal(record.pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isRunning(record)) {
    if (Date.now() >= deadline) {
      signal(-record.pid, "SIGKILL");
      signal(record.pid, "SIGKILL");
      // SIGKILL cannot be refused; the kernel only needs a moment.
      for (let i = 0; i < 50 && isRunning(record); i++) await sleep(20);
      return;
    }
    await sleep(50);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already (or not a group leader)
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
