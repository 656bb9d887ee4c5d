/**
 * The actions that answer load: scale out when load is rising (or the
 * instances are CPU-bound), and throttle lower-criticality services of the
 * app (their concurrency lowered, sized to what the overloaded one needs) so
 * it keeps its latency while capacity comes. Pure, like decide.ts.
 */

import type { Plan, ThrottleChange } from "./plan.ts";
import type { Finding } from "./symptoms.ts";
import {
  cpuBound,
  cpuShare,
  cpuStarved,
  MIN_REQUESTS,
  overloadedNow,
  PANIC_WINDOW_MS,
  pct,
  RANK,
  round1,
  thresholdOf,
  windowMsOf,
} from "./symptoms.ts";
import { type AppView, type ServiceView, serviceKeyOf } from "./view.ts";

/** rps over the window against rps over RISE_SPAN windows: at least this is rising load. */
export const RISE_RATIO = 1.2;
export const RISE_SPAN = 6;

/**
 * Rising load: rps over the window the finding was seen over (saturation's
 * panic window, or the rule's) against rps over RISE_SPAN of the rule's
 * windows. Under saturation the answers per second are what the instances
 * serve, not what is asked: what is asked is what they answered plus what
 * the queue grew by (requests are answered or still in flight), so a load
 * step shows as rising at once, and a service that got slower under the
 * same load (its queue grows as its answers drop) does not.
 */
export function loadRise(
  finding: Finding,
  view: AppView,
  s: ServiceView,
): { ratio: number; line: string } | undefined {
  const w = windowMsOf(finding.rule);
  const shortMs = finding.windowMs ?? w;
  const key = serviceKeyOf(view, s.name);
  const short = view.load.service(key, shortMs);
  const long = view.load.service(key, w * RISE_SPAN);
  if (!short || !long || short.requests < MIN_REQUESTS) return undefined;
  const asked = finding.rule.symptom === "saturation" ? askedNow(view, key) : undefined;
  const rps = Math.max(short.rps, asked?.rps ?? 0);
  const ratio = long.rps > 0 ? rps / long.rps : Number.POSITIVE_INFINITY;
  const what =
    asked && asked.rps > short.rps
      ? `${round1(asked.answered)} answered + the queue growing ${round1(asked.growth)}/s = ${round1(asked.rps)} rps asked over the last 1 s`
      : `${round1(short.rps)} rps over ${shortMs / 1000} s`;
  return {
    ratio,
    line: `${s.name}: ${what} against ${round1(long.rps)} over ${(w * RISE_SPAN) / 1000} s (×${Number.isFinite(ratio) ? round1(ratio) : "∞"})`,
  };
}

/**
 * Requests asked of a service over the last second: its answers plus the
 * growth of its queue. In flight over 1 s is the last report's count, over
 * 2 s the mean of the last two, so the one before is 2 × (2 s) − (1 s).
 */
function askedNow(view: AppView, key: string): { rps: number; answered: number; growth: number } | undefined {
  const one = view.load.service(key, 1000);
  const two = view.load.service(key, 2000);
  if (!one || !two) return undefined;
  const growth = Math.max(0, 2 * (one.inflight - two.inflight));
  return { rps: one.rps + growth, answered: one.rps, growth };
}

/** Scale out on rising load (×2 at most, +1 at least), throttling lower-criticality services meanwhile when allowed. */
export function scaleOut(
  finding: Finding,
  view: AppView,
  s: ServiceView,
  throttleAllowed: boolean,
): Plan | string {
  if (
    finding.rule.symptom !== "saturation" &&
    finding.rule.symptom !== "latency" &&
    finding.rule.symptom !== "alert"
  )
    return `more instances do not answer ${finding.rule.symptom}`;
  if (s.spec.autoscale) return `${s.name} is autoscaled: the autoscaler owns its count`;
  if (s.state === "updating" || s.state === "rolling_back") return `${s.name} is ${s.state}`;
  if (s.running < s.instances)
    return `${s.name} already waits for ${s.instances - s.running} instance(s) to run`;
  // On a full node the room a new instance takes is the room a more critical service's needs.
  const first = moreCriticalOverloaded(finding, view, s);
  if (first)
    return `${first.name} (${first.spec.criticality ?? "normal"}) is overloaded too: new capacity goes to it first`;
  const rise = loadRise(finding, view, s);
  const rising = rise !== undefined && rise.ratio >= RISE_RATIO;
  // Load that has been high longer than the rise span no longer rises; instances busy on
  // their CPU still say that more of them serve more (a slow dependency leaves the CPU idle).
  // Instances starved of CPU (past their request, waiting for one on a contended node) are the same
  // sign without a ceiling.
  const bound = rising ? undefined : cpuBound(view, s);
  if (!rising && !bound) {
    if (!rise) return "too few requests to tell whether load rises";
    const cpu = cpuShare(view, s);
    return `load is not rising (${rise.line}) and the instances are not CPU-bound${cpu ? ` (CPU ${pct(cpu.share)})` : ""}: the service got slower, not busier`;
  }
  const from = s.instances;
  const max = Math.max(from + 1, from * 2);
  // Answers per second under saturation are what the instances serve, not what is asked: the
  // queue (in flight against the threshold) says how far past it the demand is.
  const queue = finding.rule.symptom === "saturation" ? overBy(finding, 1) : 1;
  const want = Math.ceil(from * Math.max(rising ? Math.min(rise.ratio, 2) : 1, queue));
  const wanted = Math.min(max, Math.max(from + 1, want));
  // Without a machine provider, instances that fit nowhere would only wait as pending: as many as fit.
  const room = roomFor(view, s.name, from, wanted);
  if (typeof room === "string") return `${room}; no machine provider adds nodes`;
  const to = room;
  const throttle = throttleAllowed ? throttleChanges(view, s, to / from) : [];
  const evidence = [...finding.evidence];
  if (rise) evidence.push(rise.line);
  if (bound?.kind === "ceiling")
    evidence.push(`${s.name}: CPU ${pct(bound.share)} of its ceiling: CPU-bound, more instances serve more`);
  else if (bound)
    evidence.push(
      `${s.name}: waits for a CPU ${pct(bound.share)} of its runnable time past its request: more instances get more of the CPUs`,
    );
  if (to < wanted)
    evidence.push(
      `${s.name}: ${to} of the ${wanted} instances asked fit on today's nodes (no machine provider adds nodes)`,
    );
  if (throttle.length > 0) evidence.push(...throttleLines(throttle, s));
  const why = rising
    ? `load on ${s.name} rises ×${Number.isFinite(rise.ratio) ? round1(rise.ratio) : "∞"}`
    : bound?.kind === "starved"
      ? `${s.name} is starved of CPU`
      : `${s.name} is CPU-bound`;
  return {
    action: "scale-out",
    target: `${s.name} ${from} → ${to}`,
    reason: `${why}: scale out to ${to}${throttle.length > 0 ? `, throttling ${throttle.map((t) => t.service).join(", ")} until they serve` : ""}`,
    evidence,
    change: { kind: "scale-out", service: s.name, from, to, throttle },
  };
}

/**
 * The most instances of `service`, from `from` + 1 up to `wanted`, that fit
 * on today's nodes (AppView.shortfall; fitting more never frees room, so the
 * largest is found by halving), or why not even one more fits. Without the
 * question (a machine provider adds nodes): `wanted`.
 */
export function roomFor(view: AppView, service: string, from: number, wanted: number): number | string {
  const short = view.shortfall;
  if (!short || short(service, wanted) === undefined) return wanted;
  const none = short(service, from + 1);
  if (none !== undefined) return none;
  let fits = from + 1;
  let over = wanted;
  while (over - fits > 1) {
    const mid = Math.floor((fits + over) / 2);
    if (short(service, mid) === undefined) fits = mid;
    else over = mid;
  }
  return fits;
}

/**
 * A service of the app more critical than `s` on which the finding's rule
 * shows overload now, or (for saturation) whose instances are starved of CPU.
 */
export function moreCriticalOverloaded(
  finding: Finding,
  view: AppView,
  s: ServiceView,
): ServiceView | undefined {
  const mine = RANK[s.spec.criticality ?? "normal"];
  return view.services.find(
    (o) =>
      RANK[o.spec.criticality ?? "normal"] > mine &&
      (overloadedNow(finding.rule, view, o) ||
        (finding.rule.symptom === "saturation" && cpuStarved(view, o) !== undefined)),
  );
}

/** Throttle lower-criticality services alone (scale-out not allowed, or turned down). */
export function throttleOnly(finding: Finding, view: AppView, s: ServiceView): Plan | string {
  if (
    finding.rule.symptom !== "saturation" &&
    finding.rule.symptom !== "latency" &&
    finding.rule.symptom !== "alert"
  )
    return `throttling does not answer ${finding.rule.symptom}`;
  const throttle = throttleChanges(view, s, overBy(finding));
  if (throttle.length === 0) return `no lower-criticality service of ${view.app} to throttle for ${s.name}`;
  return {
    action: "throttle",
    target: throttle.map((t) => t.service).join(", "),
    reason: `${s.name} is overloaded: throttle lower-criticality ${throttle.map((t) => t.service).join(", ")} so it keeps its latency`,
    evidence: [...finding.evidence, ...throttleLines(throttle, s)],
    change: { kind: "throttle", throttle },
  };
}

/**
 * How many times its capacity the overloaded service needs, from the finding
 * (in flight per instance, or p99, against the threshold), between 1 and 2
 * (the most a scale-out adds at once); `unknown` when the figure says
 * nothing of it (CPU, an alert).
 */
export function overBy(finding: Finding, unknown = 2): number {
  const t = thresholdOf(finding.rule);
  const sym = finding.rule.symptom;
  // A saturation finding by CPU carries a share (≤ 1), not a count in flight.
  if ((sym === "saturation" && finding.value > 1) || sym === "latency")
    return Math.min(2, Math.max(1, finding.value / t));
  return unknown;
}

/**
 * The app's services of lower criticality than `s` with traffic (answers over
 * 10 s, or requests in flight now), each given a
 * concurrency limit sized to what `s` needs: `s` needs `need` times the
 * capacity it has (its scale-out's to / from), so until that capacity serves
 * it needs its CPU used × (need − 1) more; each lower service keeps the share
 * of its in-flight requests (over the panic window: the load now, not a 10 s
 * average that is mostly before the overload) that leaves that much of the
 * CPU they use. Without CPU figures that show `s` at its CPU, each keeps
 * 1 / need of them. At least 1;
 * a limit at least as tight already in force is kept.
 */
export function throttleChanges(view: AppView, s: ServiceView, need: number): ThrottleChange[] {
  const mine = RANK[s.spec.criticality ?? "normal"];
  const lower = view.services.filter((o) => o.name !== s.name && RANK[o.spec.criticality ?? "normal"] < mine);
  const cpuUsed = (name: string): number | undefined => {
    const used = view.instances
      .filter((i) => i.service === name && i.state === "running")
      .map((i) => i.cpuCores);
    return used.length > 0 && used.every((c) => c !== undefined)
      ? used.reduce((a, b) => a! + b!, 0)
      : undefined;
  };
  // Agents report CPU over the last second: right after a step their figures may still be the calm
  // before it, and say nothing of the need. They size the throttle once they show `s` at its CPU.
  const wanted = cpuBound(view, s) ? cpuUsed(s.name) : undefined;
  const lowCpu = lower.map((o) => cpuUsed(o.name));
  const freed = lowCpu.every((c) => c !== undefined) ? lowCpu.reduce((a, b) => a! + b!, 0)! : undefined;
  // Every lower service gives up the same share of its CPU.
  const keep =
    wanted !== undefined && freed !== undefined && freed > 0
      ? Math.max(0, 1 - (wanted * (need - 1)) / freed)
      : 1 / need;
  const out: ThrottleChange[] = [];
  for (const o of lower) {
    const key = serviceKeyOf(view, o.name);
    const f = view.load.service(key, 10_000);
    const now = view.load.service(key, PANIC_WINDOW_MS) ?? f;
    // Traffic: answered lately, or in flight now (a step on both at once has few answers yet).
    if (!f || !now || (f.requests === 0 && now.inflight === 0)) continue;
    const concurrency = Math.max(1, Math.floor(now.inflight * keep));
    const current = o.concurrencyOverride !== undefined ? o.concurrencyOverride : o.spec.concurrency;
    if (typeof current === "number" && current <= concurrency) continue;
    out.push({ service: o.name, concurrency, previous: o.concurrencyOverride });
  }
  return out;
}

const throttleLines = (throttle: ThrottleChange[], s: ServiceView): string[] =>
  throttle.map(
    (t) =>
      `${t.service} (criticality lower than ${s.name}'s ${s.spec.criticality ?? "normal"}): concurrency → ${t.concurrency}`,
  );
