import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { cpuCgroupOf, cpuWaits, parseTrace, startSchedTrace } from "./sched-trace.ts";

const sw = (cpu: number, ts: string, prev: number, state: string, next: number) =>
  `  node-${prev} [00${cpu}] d..2. ${ts}: sched_switch: prev_comm=x prev_pid=${prev} prev_prio=120 prev_state=${state} ==> next_comm=y next_pid=${next} next_prio=120`;
const wake = (cpu: number, ts: string, pid: number, target: number) =>
  `  node-1 [00${cpu}] dNh2. ${ts}: sched_wakeup: comm=node pid=${pid} prio=120 target_cpu=00${target}`;

// api (tid 10) runs on CPU 0 from the start; herd (20) preempts it for 4 ms; batch (30) holds
// CPU 1 throughout; api sleeps, is woken onto CPU 1, and waits 2 ms behind batch while CPU 0 idles.
const TRACE = [
  "# tracer: nop",
  sw(0, "99.990000", 20, "S", 10), // before the marker: not counted
  "  bench-1 [000] ...1. 100.000000: tracing_mark_write: herd-bench-sched-trace-start",
  sw(1, "100.000000", 0, "R", 30),
  sw(0, "100.010000", 10, "R+", 20),
  sw(0, "100.014000", 20, "S", 10),
  sw(0, "100.016000", 10, "S", 0),
  wake(0, "100.018000", 10, 1),
  sw(1, "100.020000", 30, "R", 10),
  sw(1, "100.025000", 10, "S", 30),
].join("\n");

test("cpuWaits: each wait from runnable to running, what ran on its CPU and on the others", () => {
  const events = parseTrace(TRACE);
  const names: Record<number, string> = { 10: "api", 20: "herd", 30: "batch" };
  const w = cpuWaits(events, new Set([10]), 0, 1, (tid) => names[tid] ?? String(tid));
  assert.equal(w.waits, 2);
  assert.equal(Math.round(w.waitedMs), 6);
  // api's runs that began in the span: 14–16 ms and 20–25 ms (the one from before the marker has no start).
  assert.equal(Math.round(w.ranMs), 7);
  assert.equal(w.moved, 0);
  const round = (m: Map<string, number>) => Object.fromEntries([...m].map(([k, v]) => [k, Math.round(v)]));
  assert.deepEqual(round(w.onItsCpu), { herd: 4, batch: 2 });
  assert.deepEqual(round(w.onOtherCpus), { batch: 4, idle: 2 });
  // A span that ends before the second wait begins counts only the first.
  assert.equal(cpuWaits(events, new Set([10]), 0, 0.015, (t) => String(t)).waits, 1);
});

test("cpuCgroupOf reads the cpu controller's path (v1) or the unified one (v2)", () => {
  assert.equal(cpuCgroupOf("12:memory:/herd/a\n4:cpu,cpuacct:/herd/shop-api-1\n0::/x\n"), "/herd/shop-api-1");
  assert.equal(cpuCgroupOf("0::/herd/shop-api-1\n"), "/herd/shop-api-1");
  assert.equal(cpuCgroupOf(""), "");
});

test("startSchedTrace turns the sched events on and puts every setting back when stopped", {
  skip: process.getuid?.() === 0 ? false : "writes tracefs settings as root",
}, () => {
  const dir = mkdtempSync(join(tmpdir(), "herd-tracefs-"));
  try {
    const files: Record<string, string> = {
      current_tracer: "nop",
      set_event: "",
      tracing_on: "1",
      buffer_size_kb: "7 (expanded: 1408)",
      trace: TRACE,
      trace_marker: "",
    };
    for (const e of ["sched_switch", "sched_wakeup", "sched_wakeup_new"]) {
      mkdirSync(join(dir, "events/sched", e), { recursive: true });
      files[`events/sched/${e}/enable`] = "0";
    }
    for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v);
    const trace = startSchedTrace(dir);
    assert.equal(typeof trace, "object");
    const read = (f: string) => readFileSync(join(dir, f), "utf8");
    assert.equal(read("tracing_on"), "1");
    assert.equal(read("events/sched/sched_switch/enable"), "1");
    assert.equal(read("buffer_size_kb"), "65536");
    const capture = (trace as Exclude<typeof trace, string>).stop();
    assert.ok(capture.threads.get(process.pid), "this process's main thread is listed");
    // tracing_on as it was from boot; the buffer at the size it takes when first used.
    assert.equal(read("tracing_on"), "1");
    assert.equal(read("events/sched/sched_switch/enable"), "0");
    assert.equal(read("buffer_size_kb"), "1408");
    // In use (a tracer, or events someone else set): refused, nothing changed.
    writeFileSync(join(dir, "set_event"), "irq:irq_handler_entry");
    assert.match(String(startSchedTrace(dir)), /in use/);
    writeFileSync(join(dir, "set_event"), "");
    writeFileSync(join(dir, "current_tracer"), "function");
    assert.match(String(startSchedTrace(dir)), /in use/);
    assert.equal(read("events/sched/sched_switch/enable"), "0");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
