/**
 * The health probe loop of one running instance: an HTTP check of its port
 * (probes.ts), or for a process check the process staying up an interval.
 * Until the first pass it probes often; then at the service's interval. Each
 * outcome is recorded (probe-attempts.ts); a pass ends the start boost and
 * makes it healthy, `failures` in a row make a healthy one unhealthy.
 */

import { type Managed, RUNNING } from "./managed-instance.ts";
import { probe } from "./probes.ts";

/** Log lines a failing probe attempt carries (the start of a new outcome only). */
const PROBE_TAIL_LINES = 5;
/** Characters kept of each of those lines. */
const PROBE_LINE_CHARS = 500;
/** The first health check of a new instance, ms after its start; then more often than its interval until it passes. */
const FIRST_PROBE_MS = 10;

/** What the loop needs of its agent. */
export interface ProbeHooks {
  /** The instance's last log lines. */
  tail(id: string): Promise<string[]>;
  /** Its status changed: a heartbeat should carry it. */
  changed(): void;
  /** It is healthy after its start: the end of its start boost and start weight (driver.ts started). */
  started(id: string, cpuLimit: number | undefined): void;
}

/** Starts probing inst (the loop of an earlier start ends: its run number is stale). */
export function startProbeLoop(inst: Managed, hooks: ProbeHooks): void {
  const health = inst.desired?.run.health;
  if (!health || inst.port === undefined) return;
  const run = ++inst.probeRun;
  const port = inst.port;
  const next = (delay: number) => {
    inst.probeTimer = setTimeout(async () => {
      // A process check passes once the process has stayed up for one interval (the timer's wait).
      const result =
        health.kind === "process"
          ? { ok: true }
          : await probe({
              port,
              path: health.path,
              timeoutMs: health.timeoutMs,
              ...(inst.probeHost ? { host: inst.probeHost } : {}),
            });
      if (run !== inst.probeRun || !RUNNING.has(inst.state)) return;
      // A new failing outcome carries the last log lines, read before the record exists, so that no
      // heartbeat sends the record without them (each line cut short: they ride every heartbeat).
      let logTail: string[] | undefined;
      if (!result.ok && inst.probes.isNew(result)) {
        logTail = (await hooks.tail(inst.id))
          .slice(-PROBE_TAIL_LINES)
          .map((l) => (l.length > PROBE_LINE_CHARS ? `${l.slice(0, PROBE_LINE_CHARS)}…` : l));
        if (run !== inst.probeRun || !RUNNING.has(inst.state)) return;
      }
      const { attempt, fresh } = inst.probes.record(result, Date.now());
      if (fresh && logTail !== undefined) attempt.logTail = logTail;
      // A new outcome goes up at once: a deploy shows each as it happens.
      if (fresh) hooks.changed();
      if (result.ok) {
        inst.failures = 0;
        if (inst.state !== "healthy") {
          // Started: the start boost ends (its own CPU ceiling, if it has one), and a critical
          // instance gets its full weight.
          hooks.started(inst.id, inst.desired?.run.resources.cpuLimit);
          inst.state = "healthy";
          inst.message = undefined;
          inst.logTail = undefined;
          hooks.changed();
        }
      } else {
        inst.failures++;
        if (inst.state === "healthy" && inst.failures >= health.failures) {
          inst.state = "unhealthy";
          inst.message = `${inst.failures} health checks failed in a row: ${result.message}`;
          inst.logTail = await hooks.tail(inst.id);
          hooks.changed();
        }
      }
      // Until it first passes, probe often: a fresh instance should take traffic as soon as it can
      // (a cold start from zero has requests waiting for it). 10 ms, then ×1.2 up to 100 ms: a
      // refused connection costs next to nothing, and an app that listens after 300–500 ms (a
      // Node start) is seen within 30–80 ms of it.
      if (run === inst.probeRun)
        next(
          inst.state === "healthy" || inst.state === "unhealthy"
            ? health.intervalMs
            : Math.min(FIRST_PROBE_MS * 1.2 ** ++tries, 100, health.intervalMs),
        );
    }, delay);
  };
  let tries = 0;
  // The first probe soon after start: most apps listen within a fraction of a second.
  next(health.kind === "process" ? health.intervalMs : Math.min(FIRST_PROBE_MS, health.intervalMs));
}

/** Ends inst's probe loop. */
export function stopProbeLoop(inst: Managed): void {
  inst.probeRun++;
  clearTimeout(inst.probeTimer);
}
