/**
 * Symptoms: does a rule's condition hold for a service now? Pure: the view
 * and the live figures in, findings (with the figures that showed them) out.
 *
 *   error-rate  failed / requests over the window ≥ threshold (at least MIN_REQUESTS)
 *   latency     p99 over the window ≥ threshold ms (at least MIN_REQUESTS): the SLO burns
 *   saturation  in-flight requests per running instance ≥ threshold over the last 2 s (the panic window:
 *               a queue is seen within about a second of a load step) or over the rule's window,
 *               or CPU ≥ 90 % of the instances' ceiling, or instances using at least their CPU request
 *               that wait for a CPU ≥ 10 % of their runnable time (starved: the node's CPUs are taken)
 *   crash-loop  the service's consecutive crashes ≥ threshold, or it is failed
 *   alert       the named alert rule fires for the app (for the service, when it says one)
 */

import { DEFAULT_RESOURCES } from "../../model/manifest-service.ts";
import type { RemediationRule, Symptom } from "../../model/remediation.ts";
import { type AppView, type ServiceView, serviceKeyOf } from "./view.ts";

/** Fewer requests than this in the window say nothing about a rate or a p99. */
export const MIN_REQUESTS = 20;

/** Each symptom's threshold and window when its rule leaves them out. */
export const SYMPTOM_DEFAULTS: Record<Symptom, { threshold: number; windowS: number }> = {
  "error-rate": { threshold: 0.1, windowS: 10 },
  latency: { threshold: 1000, windowS: 30 },
  saturation: { threshold: 8, windowS: 10 },
  "crash-loop": { threshold: 3, windowS: 10 },
  alert: { threshold: 0, windowS: 10 },
};

export const thresholdOf = (rule: RemediationRule): number =>
  rule.threshold ?? SYMPTOM_DEFAULTS[rule.symptom].threshold;
export const windowMsOf = (rule: RemediationRule): number =>
  (rule.windowS ?? SYMPTOM_DEFAULTS[rule.symptom].windowS) * 1000;

/**
 * Saturation's short window: in-flight requests per instance over the last
 * 2 s (two gateway reports) show a queue within about a second of a load
 * step, where the rule's 10 s average takes 4 s or more to cross (Knative's
 * panic window, for the same reason).
 */
export const PANIC_WINDOW_MS = 2000;

/** A rule's symptom holding for one service. */
export interface Finding {
  rule: RemediationRule;
  service: string;
  /** The figure that crossed the threshold. */
  value: number;
  /** The window the figure was seen over, when shorter than the rule's (saturation's panic window). */
  windowMs?: number;
  /** The figures, one line each, e.g. `web: 48% of 210 requests failed over 10 s (threshold 10%)`. */
  evidence: string[];
}

export const pct = (x: number): string => `${Math.round(x * 1000) / 10}%`;
const secs = (ms: number): string => `${Math.round(ms / 1000)} s`;

/** Criticality as a rank: critical services are looked at first, and throttle lower ones. */
export const RANK = { low: 0, normal: 1, critical: 2 } as const;
const rankOf = (s: ServiceView): number => RANK[s.spec.criticality ?? "normal"];

/**
 * The findings of one rule over the app's services, the most critical first:
 * when a critical and a low service both saturate, the critical one's
 * decision (scale it out, throttle the low one) comes first.
 */
export function detect(rule: RemediationRule, view: AppView): Finding[] {
  const services = view.services
    .filter((s) => rule.service === undefined || s.name === rule.service)
    .sort((a, b) => rankOf(b) - rankOf(a));
  const out: Finding[] = [];
  for (const s of services) {
    const f = detectOne(rule, view, s);
    if (f) out.push(f);
  }
  return out;
}

/** Whether one rule's symptom holds for one service now. */
export function detectOne(rule: RemediationRule, view: AppView, s: ServiceView): Finding | undefined {
  const threshold = thresholdOf(rule);
  const windowMs = windowMsOf(rule);
  const found = (value: number, line: string): Finding => ({
    rule,
    service: s.name,
    value,
    evidence: [line],
  });
  if (rule.symptom === "crash-loop") {
    if (s.state === "failed")
      return found(s.crashes, `${s.name}: failed after ${s.crashes} crashes in a row`);
    if (s.crashes >= threshold)
      return found(s.crashes, `${s.name}: ${s.crashes} crashes in a row (threshold ${threshold})`);
    return undefined;
  }
  if (rule.symptom === "alert") {
    const a = view.alerts.find(
      (x) => x.rule === rule.alert && (x.service === undefined || x.service === s.name),
    );
    if (!a) return undefined;
    return found(
      a.value,
      `alert ${a.rule} firing${a.service ? ` for ${a.service}` : ""} since ${secs(view.now - a.since)} ago (value ${a.value})`,
    );
  }
  if (rule.symptom === "saturation") {
    const bound = cpuBound(view, s);
    if (bound) return found(bound.share, cpuBoundLine(s, bound));
  }
  const f = view.load.service(serviceKeyOf(view, s.name), windowMs);
  if (!f) return undefined;
  if (rule.symptom === "error-rate") {
    if (f.requests < MIN_REQUESTS || f.errorRate < threshold) return undefined;
    return found(
      f.errorRate,
      `${s.name}: ${pct(f.errorRate)} of ${f.requests} requests failed over ${secs(windowMs)} (threshold ${pct(threshold)})`,
    );
  }
  if (rule.symptom === "latency") {
    if (f.requests < MIN_REQUESTS || f.p99Ms === undefined || f.p99Ms < threshold) return undefined;
    return found(
      f.p99Ms,
      `${s.name}: p99 ${Math.round(f.p99Ms)} ms over ${secs(windowMs)} (threshold ${threshold} ms), ${f.requests} requests`,
    );
  }
  // saturation: the queue now (the panic window), else the rule's average
  const sat = saturation(view, s, threshold, windowMs);
  if (!sat) return undefined;
  return { ...found(sat.per, sat.line), ...(sat.windowMs < windowMs ? { windowMs: sat.windowMs } : {}) };
}

/**
 * In-flight requests per running instance at or over `threshold`, over the
 * panic window (a queue building now) or over `windowMs` (a sustained one).
 */
export function saturation(
  view: AppView,
  s: ServiceView,
  threshold: number,
  windowMs: number,
): { per: number; windowMs: number; line: string } | undefined {
  const key = serviceKeyOf(view, s.name);
  const running = Math.max(1, s.running);
  const stable = view.load.service(key, windowMs);
  if (!stable) return undefined;
  const shortMs = Math.min(PANIC_WINDOW_MS, windowMs);
  const short = shortMs < windowMs ? view.load.service(key, shortMs) : undefined;
  const perStable = stable.inflight / running;
  const perShort = short ? short.inflight / running : 0;
  const shed = stable.shed > 0 ? `, ${stable.shed} shed` : "";
  if (short && perShort >= threshold && perShort >= perStable)
    return {
      per: perShort,
      windowMs: shortMs,
      line: `${s.name}: ${round1(perShort)} requests in flight per instance over the last ${secs(shortMs)} (${round1(short.inflight)} on ${s.running} running; ${round1(perStable)} over ${secs(windowMs)}; threshold ${threshold})${shed}`,
    };
  if (perStable < threshold) return undefined;
  return {
    per: perStable,
    windowMs,
    line: `${s.name}: ${round1(perStable)} requests in flight per instance over ${secs(windowMs)} (${round1(stable.inflight)} on ${s.running} running, threshold ${threshold})${shed}`,
  };
}

/**
 * Whether a service is overloaded now: in flight per instance over the panic
 * window at or over the threshold (other symptoms: the rule holds). A
 * throttle made for it is lifted once this is false and its new capacity
 * serves, without waiting for the rule's 10 s average to forget the overload
 * (nor for agents' next CPU figures).
 */
export function overloadedNow(rule: RemediationRule, view: AppView, s: ServiceView): boolean {
  if (rule.symptom !== "saturation") return detectOne(rule, view, s) !== undefined;
  const f = view.load.service(serviceKeyOf(view, s.name), Math.min(PANIC_WINDOW_MS, windowMsOf(rule)));
  return f !== undefined && f.inflight / Math.max(1, s.running) >= thresholdOf(rule);
}

export const round1 = (x: number): number => Math.round(x * 10) / 10;

/** CPU used against CPU asked, over the running instances that report it: this much is saturated. */
export const CPU_SATURATED = 0.9;

/**
 * The running instances' CPU use as a share of their ceiling (`resources.cpuLimit`),
 * when agents report it. Without a ceiling there is no such share: a burstable
 * instance may use idle CPU far past its request (a Node process starting uses
 * several times 0.1 core), and that is no sign of saturation, so only the load
 * figures (in flight, latency) can tell.
 */
export function cpuShare(
  view: AppView,
  s: ServiceView,
): { share: number; cores: number; instances: number } | undefined {
  const cores = s.spec.resources?.cpuLimit;
  if (!cores) return undefined;
  const used = view.instances
    .filter((i) => i.service === s.name && i.state === "running" && i.cpuCores !== undefined)
    .map((i) => i.cpuCores!);
  if (used.length === 0) return undefined;
  return { share: used.reduce((a, b) => a + b, 0) / (used.length * cores), cores, instances: used.length };
}

/**
 * Of their runnable time, instances past their CPU request that waited this
 * much for a CPU are starved of it. A critical instance at 0.4 of a core
 * against its 0.25 that waited 10–16 % had a p99 2–2.5× its idle one
 * (bench:autoscale overload), even with the node's low instances at the
 * least weight (cpu-squeeze.ts).
 */
export const CPU_WAIT_SATURATED = 0.1;
/**
 * ...when they use at least this share of their CPU request. Under
 * contention each instance gets at least its request (its cgroup weight), so
 * one that waits while using less is held back by the node's weights, not
 * short of instances: on a node of 30 busy apps each waits most of its
 * runnable time at a third of its request (bench:density), and more of them
 * would only split the same CPUs further.
 */
export const CPU_WAIT_BUSY = 1;
/**
 * Instances younger than this are left out: their agent's first readings
 * (one a second) cover their start and warm-up, when Node compiles on every
 * core it gets.
 */
export const CPU_WAIT_MIN_AGE_MS = 15_000;

/** How long the running instances that report it waited for a CPU, and what they used, on average. */
export interface CpuWait {
  /** Of their runnable time, the share they waited. */
  share: number;
  /** CPU cores each used. */
  cores: number;
  /** CPU cores each asked. */
  request: number;
  instances: number;
}

/**
 * Whether a service's instances are starved of CPU: using at least
 * CPU_WAIT_BUSY of their request and waiting for a CPU CPU_WAIT_SATURATED of
 * their runnable time or more, on average (agents' heartbeats). A burstable
 * instance has no ceiling to be near (cpuShare), so this is how its
 * saturation shows: it needs more than it asked, its node's CPUs are taken,
 * and its requests queue for one.
 */
export function cpuStarved(view: AppView, s: ServiceView): CpuWait | undefined {
  const seen = view.instances.filter(
    (i) =>
      i.service === s.name &&
      i.state === "running" &&
      i.cpuWaitShare !== undefined &&
      i.cpuCores !== undefined &&
      (i.startedAt === undefined || view.now - i.startedAt >= CPU_WAIT_MIN_AGE_MS),
  );
  if (seen.length === 0) return undefined;
  const mean = (f: (i: (typeof seen)[number]) => number) => seen.reduce((a, i) => a + f(i), 0) / seen.length;
  const w: CpuWait = {
    share: mean((i) => i.cpuWaitShare!),
    cores: mean((i) => i.cpuCores!),
    request: s.spec.resources?.cpu ?? DEFAULT_RESOURCES.cpu,
    instances: seen.length,
  };
  return w.share >= CPU_WAIT_SATURATED && w.cores >= CPU_WAIT_BUSY * w.request ? w : undefined;
}

/**
 * Instances bound by CPU, so that more of them serve more (a slow dependency
 * leaves the CPU idle): at their ceiling (cpuShare), or starved of CPU.
 */
export type CpuBound =
  | ({ kind: "ceiling" } & NonNullable<ReturnType<typeof cpuShare>>)
  | ({ kind: "starved" } & CpuWait);

export function cpuBound(view: AppView, s: ServiceView): CpuBound | undefined {
  const cpu = cpuShare(view, s);
  if (cpu !== undefined && cpu.share >= CPU_SATURATED) return { kind: "ceiling", ...cpu };
  const starved = cpuStarved(view, s);
  return starved && { kind: "starved", ...starved };
}

/** The evidence line of a CPU-bound finding. */
export const cpuBoundLine = (s: ServiceView, b: CpuBound): string =>
  b.kind === "ceiling"
    ? `${s.name}: CPU ${pct(b.share)} of its ${b.cores} core(s) per instance over ${b.instances} running (saturated from ${pct(CPU_SATURATED)})`
    : `${s.name}: waited for a CPU ${pct(b.share)} of its runnable time, using ${round2(b.cores)} of the ${b.request} core(s) it asked, per instance over ${b.instances} running (starved from ${pct(CPU_WAIT_SATURATED)})`;

const round2 = (x: number): number => Math.round(x * 100) / 100;
