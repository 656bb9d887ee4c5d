/**
 * The actions that answer load: scale out when load is rising, and throttle
 * lower-criticality services of the app (their concurrency lowered) so the
 * overloaded one keeps its latency while capacity comes. Pure, like decide.ts.
 */

import type { Plan, ThrottleChange } from "./plan.ts";
import type { Finding } from "./symptoms.ts";
import { MIN_REQUESTS, RANK, round1, windowMsOf } from "./symptoms.ts";
import { type AppView, type ServiceView, serviceKeyOf } from "./view.ts";

/** rps over the window against rps over RISE_SPAN windows: at least this is rising load. */
export const RISE_RATIO = 1.2;
export const RISE_SPAN = 6;

/** Rising load: rps over the window against rps over RISE_SPAN windows. */
export function loadRise(
  finding: Finding,
  view: AppView,
  s: ServiceView,
): { ratio: number; line: string } | undefined {
  const w = windowMsOf(finding.rule);
  const key = serviceKeyOf(view, s.name);
  const short = view.load.service(key, w);
  const long = view.load.service(key, w * RISE_SPAN);
  if (!short || !long || short.requests < MIN_REQUESTS) return undefined;
  const ratio = long.rps > 0 ? short.rps / long.rps : Number.POSITIVE_INFINITY;
  return {
    ratio,
    line: `${s.name}: ${round1(short.rps)} rps over ${w / 1000} s against ${round1(long.rps)} over ${(w * RISE_SPAN) / 1000} s (×${Number.isFinite(ratio) ? round1(ratio) : "∞"})`,
  };
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
  const rise = loadRise(finding, view, s);
  if (!rise) return "too few requests to tell whether load rises";
  if (rise.ratio < RISE_RATIO) return `load is not rising (${rise.line}): the service got slower, not busier`;
  const from = s.instances;
  const max = Math.max(from + 1, from * 2);
  const want = Math.ceil(from * Math.min(rise.ratio, 2));
  const to = Math.min(max, Math.max(from + 1, want));
  const throttle = throttleAllowed ? throttleChanges(view, s) : [];
  const evidence = [...finding.evidence, rise.line];
  if (throttle.length > 0) evidence.push(...throttleLines(throttle, s));
  return {
    action: "scale-out",
    target: `${s.name} ${from} → ${to}`,
    reason: `load on ${s.name} rises ×${Number.isFinite(rise.ratio) ? round1(rise.ratio) : "∞"}: scale out to ${to}${throttle.length > 0 ? `, throttling ${throttle.map((t) => t.service).join(", ")} until they serve` : ""}`,
    evidence,
    change: { kind: "scale-out", service: s.name, from, to, throttle },
  };
}

/** Throttle lower-criticality services alone (scale-out not allowed, or turned down). */
export function throttleOnly(finding: Finding, view: AppView, s: ServiceView): Plan | string {
  if (
    finding.rule.symptom !== "saturation" &&
    finding.rule.symptom !== "latency" &&
    finding.rule.symptom !== "alert"
  )
    return `throttling does not answer ${finding.rule.symptom}`;
  const throttle = throttleChanges(view, s);
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
 * The app's services of lower criticality than `s` with traffic, each given
 * half of its in-flight requests (at least 1) as its concurrency limit,
 * unless a limit at least that tight is already in force.
 */
export function throttleChanges(view: AppView, s: ServiceView): ThrottleChange[] {
  const mine = RANK[s.spec.criticality ?? "normal"];
  const out: ThrottleChange[] = [];
  for (const o of view.services) {
    if (o.name === s.name || RANK[o.spec.criticality ?? "normal"] >= mine) continue;
    const f = view.load.service(serviceKeyOf(view, o.name), 10_000);
    if (!f || f.requests === 0) continue;
    const concurrency = Math.max(1, Math.floor(f.inflight / 2));
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
