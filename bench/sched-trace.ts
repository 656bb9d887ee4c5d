// The kernel's own record of who ran on each CPU while a process waited for
// one: ftrace's sched_switch and sched_wakeup events (root, tracefs), for a
// benchmark that needs to say where a latency went (bench/autoscale-overload.ts,
// BENCH_SCHED_TRACE=1). A trace is a few seconds long (a 64 MB ring per CPU);
// starting one saves the tracer's settings and stopping restores them.
//
//   startSchedTrace() ─► { stop() } ─► SchedCapture { text, threads } ─► cpuWaits(capture, pids, from, to, label)
//
// cpuWaits counts each wait of the given threads from when they became
// runnable (a wakeup, or preempted while runnable) to when they ran, and
// splits what ran meanwhile into the CPU the thread was queued on (it waited
// behind those) and the other CPUs (the kernel did not move it there).

import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { threadsOf } from "../src/agent/realtime-guard.ts";

const TRACEFS = "/sys/kernel/tracing";
const EVENTS = ["sched/sched_switch", "sched/sched_wakeup", "sched/sched_wakeup_new"];
const BUFFER_KB = "65536";

/** One thread when the trace stopped. */
export interface ThreadInfo {
  pid: number;
  /** The cpu controller's cgroup path (v1 `cpu,cpuacct`, or v2's one). */
  cgroup: string;
  /** The process's command line, empty for a kernel thread. */
  cmdline: string;
  comm: string;
}

export interface SchedCapture {
  /** The trace as tracefs prints it, from the start marker. */
  text: string;
  /** Threads by tid, read when the trace stopped (those gone by then are missing). */
  threads: Map<number, ThreadInfo>;
}

export interface SchedTrace {
  /** Stops the trace, restores the tracer's settings, and returns what it saw. */
  stop(): SchedCapture;
}

const MARKER = "herd-bench-sched-trace-start";

/** Starts a trace, or says why it cannot (not root, no tracefs, the tracer in use). */
export function startSchedTrace(tracefs = TRACEFS): SchedTrace | string {
  if (process.getuid?.() !== 0) return "tracing needs root";
  if (!existsSync(join(tracefs, "trace_marker"))) return `no tracefs at ${tracefs}`;
  const file = (f: string) => join(tracefs, f);
  const read = (f: string) => readFileSync(file(f), "utf8").trim();
  // tracing_on is 1 from boot with nothing to record: in use means a tracer or events someone set.
  if (read("current_tracer") !== "nop" || read("set_event") !== "")
    return "the kernel's tracer is in use by something else";
  const saved = new Map<string, string>([
    ["tracing_on", read("tracing_on")],
    // "7 (expanded: 1408)": not allocated yet; 1408 is what it becomes on first use.
    ["buffer_size_kb", /expanded: (\d+)/.exec(read("buffer_size_kb"))?.[1] ?? read("buffer_size_kb")],
  ]);
  for (const e of EVENTS) saved.set(`events/${e}/enable`, read(`events/${e}/enable`));
  const restore = () => {
    writeFileSync(file("tracing_on"), "0");
    writeFileSync(file("trace"), "");
    for (const [f, v] of saved) writeFileSync(file(f), v);
  };
  try {
    writeFileSync(file("trace"), "");
    writeFileSync(file("buffer_size_kb"), BUFFER_KB);
    for (const e of EVENTS) writeFileSync(file(`events/${e}/enable`), "1");
    writeFileSync(file("tracing_on"), "1");
    writeFileSync(file("trace_marker"), MARKER);
  } catch (err) {
    restore();
    return `cannot start the trace: ${(err as Error).message}`;
  }
  let done: SchedCapture | undefined;
  return {
    stop() {
      if (done) return done;
      writeFileSync(file("tracing_on"), "0");
      const text = readFileSync(file("trace"), "utf8");
      restore();
      done = { text, threads: readThreads() };
      return done;
    },
  };
}

/** Every thread on the machine now, by tid. */
export function readThreads(proc = "/proc"): Map<number, ThreadInfo> {
  const threads = new Map<number, ThreadInfo>();
  for (const p of readdirSync(proc)) {
    if (!/^\d+$/.test(p)) continue;
    const pid = Number(p);
    const read = (f: string) => {
      try {
        return readFileSync(join(proc, p, f), "utf8");
      } catch {
        return "";
      }
    };
    const cgroup = cpuCgroupOf(read("cgroup"));
    const cmdline = read("cmdline").split("\0").join(" ").trim();
    for (const tid of threadsOf(pid, proc) ?? []) {
      const comm = read(join("task", tid, "comm")).trim();
      threads.set(Number(tid), { pid, cgroup, cmdline, comm });
    }
  }
  return threads;
}

/** The cpu controller's path from /proc/<pid>/cgroup (v1's `cpu` line, else v2's `0::`). */
export function cpuCgroupOf(text: string): string {
  let v2 = "";
  for (const line of text.split("\n")) {
    const [, controllers, path] = line.split(":");
    if (controllers === undefined || path === undefined) continue;
    if (controllers.split(",").includes("cpu")) return path;
    if (controllers === "") v2 = path;
  }
  return v2;
}

/** What cpuWaits found over a span. */
export interface CpuWaits {
  waits: number;
  waitedMs: number;
  ranMs: number;
  /** Waits that ended on another CPU than the one the thread was queued on. */
  moved: number;
  /** What ran on the CPU each wait was queued on, ms by label. */
  onItsCpu: Map<string, number>;
  /** What ran on the other CPUs meanwhile, ms by label ("idle" for an idle CPU). */
  onOtherCpus: Map<string, number>;
}

interface Event {
  cpu: number;
  /** Seconds after the start marker. */
  at: number;
  kind: "switch" | "wakeup";
  /** switch: the thread leaving and whether it left runnable; wakeup: the woken thread and its CPU. */
  prev?: number;
  prevRunnable?: boolean;
  next?: number;
  woken?: number;
  target?: number;
}

const LINE = /^\s*.+?-\d+\s+\[(\d+)\]\s+\S+\s+(\d+\.\d+): (\w+): (.*)$/;

/** The trace's events, times in seconds after its start marker (none before it). */
export function parseTrace(text: string): Event[] {
  const events: Event[] = [];
  let start: number | undefined;
  for (const line of text.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, cpu, ts, kind, rest] = m;
    if (start === undefined) {
      if (rest.includes(MARKER)) start = Number(ts);
      continue;
    }
    const at = Number(ts) - start;
    const field = (name: string) => new RegExp(`(?:^|\\s)${name}=(\\S+)`).exec(rest)?.[1];
    if (kind === "sched_switch") {
      events.push({
        cpu: Number(cpu),
        at,
        kind: "switch",
        prev: Number(field("prev_pid")),
        prevRunnable: field("prev_state")?.startsWith("R") ?? false,
        next: Number(field("next_pid")),
      });
    } else if (kind === "sched_wakeup" || kind === "sched_wakeup_new") {
      events.push({
        cpu: Number(cpu),
        at,
        kind: "wakeup",
        woken: Number(field("pid")),
        target: Number(field("target_cpu")),
      });
    }
  }
  return events;
}

/**
 * The waits for a CPU of `tids` that began in [from, to] (seconds after the
 * start), with what ran on the CPUs meanwhile, each thread named by `label`
 * (tid 0 is "idle").
 */
export function cpuWaits(
  events: Event[],
  tids: ReadonlySet<number>,
  from: number,
  to: number,
  label: (tid: number) => string,
): CpuWaits {
  const running = new Map<number, { tid: number; since: number }>();
  const ran: { cpu: number; from: number; to: number; tid: number }[] = [];
  const queued = new Map<number, { at: number; cpu: number }>();
  const waits: { from: number; to: number; cpu: number; ranOn: number }[] = [];
  for (const e of events) {
    if (e.kind === "wakeup") {
      if (tids.has(e.woken!) && !queued.has(e.woken!)) queued.set(e.woken!, { at: e.at, cpu: e.target! });
      continue;
    }
    const r = running.get(e.cpu);
    if (r) ran.push({ cpu: e.cpu, from: r.since, to: e.at, tid: r.tid });
    if (tids.has(e.prev!) && e.prevRunnable) queued.set(e.prev!, { at: e.at, cpu: e.cpu });
    if (tids.has(e.next!)) {
      const q = queued.get(e.next!);
      queued.delete(e.next!);
      if (q && q.at >= from && q.at <= to) waits.push({ from: q.at, to: e.at, cpu: q.cpu, ranOn: e.cpu });
    }
    running.set(e.cpu, { tid: e.next!, since: e.at });
  }
  // What still ran when the trace stopped, until its last event.
  const end = events.at(-1)?.at ?? 0;
  for (const [cpu, r] of running) if (end > r.since) ran.push({ cpu, from: r.since, to: end, tid: r.tid });
  let ranMs = 0;
  for (const s of ran) if (tids.has(s.tid) && s.from >= from && s.from < to) ranMs += (s.to - s.from) * 1000;
  const onItsCpu = new Map<string, number>();
  const onOtherCpus = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, ms: number) => m.set(k, (m.get(k) ?? 0) + ms);
  // `ran` is in the order the runs ended; each CPU's runs follow one another. Per wait (by its
  // start), from the first run that ends after it starts, until each CPU has a run past its end.
  const cpus = new Set(ran.map((s) => s.cpu)).size;
  waits.sort((a, b) => a.from - b.from);
  let first = 0;
  for (const w of waits) {
    while (first < ran.length && ran[first].to <= w.from) first++;
    const past = new Set<number>();
    for (let i = first; i < ran.length && past.size < cpus; i++) {
      const s = ran[i];
      if (s.to >= w.to) past.add(s.cpu);
      const ms = (Math.min(s.to, w.to) - Math.max(s.from, w.from)) * 1000;
      if (ms > 0) add(s.cpu === w.cpu ? onItsCpu : onOtherCpus, s.tid === 0 ? "idle" : label(s.tid), ms);
    }
  }
  return {
    waits: waits.length,
    waitedMs: waits.reduce((a, w) => a + (w.to - w.from) * 1000, 0),
    ranMs,
    moved: waits.filter((w) => w.ranOn !== w.cpu).length,
    onItsCpu,
    onOtherCpus,
  };
}

/** "a 30, b 12, c 4" (ms), the largest first, at most `n`. */
export function topMs(m: Map<string, number>, n = 6): string {
  return [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${k} ${Math.round(v)}`)
    .join(", ");
}
