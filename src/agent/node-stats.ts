/**
 * The machine's own figures for the heartbeat: CPU time by mode
 * (/proc/stat), memory (/proc/meminfo), the data dir's filesystem (statfs)
 * and network bytes (/proc/net/dev). Four small reads; the agent does them
 * once a second (the heartbeat's pace: the remediation engine and the
 * autoscaler decide on these figures) and repeats the last reading between.
 */

import { readFile, statfs } from "node:fs/promises";
import type { InstanceUsage, NodeStats } from "../model/protocol.ts";
import type { DriverUsage } from "./driver.ts";

/** USER_HZ: the unit of /proc/stat (100 on every Linux architecture herd runs on). */
const CLOCK_TICKS = 100;
const CPU_MODES = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/** Reads what it can; a part that cannot be read (not Linux, no /proc) is left out. */
export async function readNodeStats(dataDir: string): Promise<NodeStats> {
  const [stat, meminfo, netdev, fs] = await Promise.all([
    readFile("/proc/stat", "utf8").catch(() => undefined),
    readFile("/proc/meminfo", "utf8").catch(() => undefined),
    readFile("/proc/net/dev", "utf8").catch(() => undefined),
    statfs(dataDir).catch(() => undefined),
  ]);
  const stats: NodeStats = {};
  const cpu = stat === undefined ? undefined : parseProcStat(stat);
  if (cpu) stats.cpuSeconds = cpu;
  const memory = meminfo === undefined ? undefined : parseMeminfo(meminfo);
  if (memory) stats.memory = memory;
  const network = netdev === undefined ? undefined : parseNetDev(netdev);
  if (network) stats.network = network;
  // bavail, not bfree: what is left for herd, without the blocks kept for root.
  if (fs) stats.disk = { totalBytes: fs.blocks * fs.bsize, freeBytes: fs.bavail * fs.bsize };
  return stats;
}

/** The `cpu` line of /proc/stat (all cores) → seconds by mode. */
export function parseProcStat(text: string): Record<string, number> | undefined {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) return undefined;
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const out: Record<string, number> = {};
  CPU_MODES.forEach((mode, i) => {
    const t = ticks[i];
    if (t !== undefined && Number.isFinite(t)) out[mode] = t / CLOCK_TICKS;
  });
  return Object.keys(out).length > 0 ? out : undefined;
}

/** MemTotal and MemAvailable (kB in the file) → bytes. */
export function parseMeminfo(text: string): { totalBytes: number; availableBytes: number } | undefined {
  const total = /^MemTotal:\s+(\d+) kB$/m.exec(text);
  const available = /^MemAvailable:\s+(\d+) kB$/m.exec(text);
  if (!total || !available) return undefined;
  return { totalBytes: Number(total[1]) * 1024, availableBytes: Number(available[1]) * 1024 };
}

/** Received and transmitted bytes summed over every interface but `lo`. */
export function parseNetDev(text: string): { receiveBytes: number; transmitBytes: number } | undefined {
  let receiveBytes = 0;
  let transmitBytes = 0;
  let found = false;
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit: bytes …
    if (name === "lo" || fields.length < 16) continue;
    receiveBytes += fields[0] ?? 0;
    transmitBytes += fields[8] ?? 0;
    found = true;
  }
  return found ? { receiveBytes, transmitBytes } : undefined;
}

/** CPU cores used on average between two readings of a CPU-seconds counter `ms` apart; undefined when unknown. */
export function coresBetween(
  before: number | undefined,
  after: number | undefined,
  ms: number,
): number | undefined {
  if (before === undefined || after === undefined || ms <= 0 || after < before) return undefined;
  return Math.round(((after - before) / (ms / 1000)) * 1000) / 1000;
}

/** Modes in which a CPU is not doing this machine's work. */
const NOT_BUSY = new Set(["idle", "iowait", "steal"]);

/** CPU seconds in the modes in which the machine was busy (user, nice, system, irq, softirq). */
export function busySeconds(byMode: Record<string, number> | undefined): number | undefined {
  if (!byMode) return undefined;
  let sum = 0;
  for (const [mode, seconds] of Object.entries(byMode)) if (!NOT_BUSY.has(mode)) sum += seconds;
  return sum;
}

/** One reading of the node's stats and its running instances' usage. */
export interface StatsReading {
  /** performance.now() of the reading. */
  at: number;
  node: NodeStats;
  usage: Map<string, InstanceUsage | undefined>;
}

/**
 * How old a reading may be before the next heartbeat reads again (ms): the
 * engine and the autoscaler decide on these figures every second, so each
 * one-second heartbeat carries a fresh one (a little under 1 s: a timer fires
 * a few ms early or late); the follow-ups between repeat it.
 */
export const STATS_MS = 900;

/**
 * Node stats and the usage of running instances, read again when the last
 * reading is older than `maxAgeMs` or an instance started since. Cores come
 * from an instance's last two readings.
 */
export class StatsReader {
  readonly #dataDir: string;
  readonly #maxAgeMs: number;
  readonly #usage: (id: string) => Promise<DriverUsage | undefined>;
  #last: StatsReading | undefined;
  /** Each instance's last CPU reading: the counter, when it was read, and the cores worked out then. */
  readonly #cpu = new Map<string, { seconds: number; at: number; cores?: number }>();

  constructor(dataDir: string, maxAgeMs: number, usage: (id: string) => Promise<DriverUsage | undefined>) {
    this.#dataDir = dataDir;
    this.#maxAgeMs = maxAgeMs;
    this.#usage = usage;
  }

  /** The reading for the instances running now (`running`: their ids). */
  async read(running: readonly string[]): Promise<StatsReading> {
    const now = performance.now();
    const last = this.#last;
    if (last && now - last.at < this.#maxAgeMs && running.every((id) => last.usage.has(id))) return last;
    const usage = new Map<string, InstanceUsage | undefined>();
    for (const id of running) {
      const read = await this.#usage(id).catch(() => undefined);
      usage.set(id, read && this.#withCores(id, read, now));
    }
    const ids = new Set(running);
    for (const id of this.#cpu.keys()) if (!ids.has(id)) this.#cpu.delete(id);
    const node: NodeStats = await readNodeStats(this.#dataDir).catch(() => ({}));
    const busy =
      last && coresBetween(busySeconds(last.node.cpuSeconds), busySeconds(node.cpuSeconds), now - last.at);
    if (busy !== undefined) node.cpuBusyCores = busy;
    this.#last = { at: now, node, usage };
    return this.#last;
  }

  /** The usage with the cores used since the instance's reading before; a repeated reading keeps its cores. */
  #withCores(id: string, read: DriverUsage, now: number): InstanceUsage {
    const { readAt = now, ...usage } = read;
    if (usage.cpuSeconds === undefined) return usage;
    const before = this.#cpu.get(id);
    const cores =
      before === undefined
        ? undefined
        : readAt === before.at
          ? before.cores
          : coresBetween(before.seconds, usage.cpuSeconds, readAt - before.at);
    this.#cpu.set(id, { seconds: usage.cpuSeconds, at: readAt, cores });
    return cores === undefined ? usage : { ...usage, cpuCores: cores };
  }
}
