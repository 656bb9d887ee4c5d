/**
 * The rollout's progress deadline: how long a rollout may go without
 * progress (one more instance of the new release placed or running) before
 * its deploy fails. Set per service in herd.yaml (`rollout: { deadline: 90s }`)
 * and per deploy (`herd deploy --deadline 60s`, `?deadline=` on the deploy API).
 */

/** The deadline when neither herd.yaml nor the deploy sets one. */
export const DEFAULT_DEADLINE_MS = 120_000;
export const MIN_DEADLINE_MS = 1000;
export const MAX_DEADLINE_MS = 24 * 3600_000;

/** A duration in seconds, minutes or hours: `90s`, `5m`, `1h`. */
export const DEADLINE_PATTERN = "^[0-9]{1,6}(s|m|h)$";
export const DEADLINE_HELP = "a duration like 90s, 5m or 1h (or a number of seconds), from 1s to 24h";

/** `90s`, `5m`, `1h` or a number of seconds → milliseconds; undefined when it is none of those or out of range. */
export function parseDeadline(value: string | number): number | undefined {
  let ms: number;
  if (typeof value === "number") ms = value * 1000;
  else {
    const m = new RegExp(DEADLINE_PATTERN).exec(value.trim());
    if (!m) return undefined;
    ms = Number(value.trim().slice(0, -1)) * { s: 1000, m: 60_000, h: 3600_000 }[m[1] as "s" | "m" | "h"];
  }
  return Number.isFinite(ms) && ms >= MIN_DEADLINE_MS && ms <= MAX_DEADLINE_MS ? Math.round(ms) : undefined;
}

/**
 * The deadline of a service's rollout when the deploy does not set one:
 * herd.yaml's, else the default — or, for a service whose health check allows
 * a longer startup, that startup plus 30 s (a slow starter is not "no progress").
 */
export function serviceDeadlineMs(
  spec: { rollout?: { deadlineMs?: number }; health: { startupMs: number } },
  defaultMs = DEFAULT_DEADLINE_MS,
): number {
  return spec.rollout?.deadlineMs ?? Math.max(defaultMs, spec.health.startupMs + 30_000);
}

/** 120000 → "120s", 90000 → "90s", 3600000 → "1h". */
export function formatDeadline(ms: number): string {
  if (ms % 3600_000 === 0) return `${ms / 3600_000}h`;
  return `${Math.round(ms / 100) / 10}s`;
}
