/**
 * Active health checks (Kong's `healthchecks.active`): the gateway sends
 * `GET <probe.path>` to every instance of each service with a `probe` and
 * takes an instance out of the rotation after `unhealthyAfter` failed probes
 * in a row (not 2xx/3xx, refused, or slower than the timeout), and back in
 * after `healthyAfter` passed ones. Instances start in: they passed the
 * agent's health check before they were `running`.
 *
 * One prober per gateway: the single process runs it itself; with workers
 * the primary runs it and sends the set of down instances to the workers
 * (cluster.ts), so an instance gets one probe per interval, not one per core.
 * Each process marks its own table with that set (`markDown`), and
 * Backend.next() & co. skip down endpoints; while none is down, picking pays
 * one integer comparison.
 *
 *   table ──update()──► ActiveProber ── a timer per instance ──► GET /healthz
 *                            │ down set changed
 *                            ▼
 *            onChange(down) ──► markDown(table, down)   (workers: over IPC first)
 */

import type http from "node:http";
import type { Logger } from "../common/log.ts";
import { nodeHttp } from "../common/node-http.ts";
import type { ProbeSpec } from "../model/manifest.ts";
import type { RouteTable } from "./route-table.ts";

/** How a prober is set up. */
export interface ProberOptions {
  logger: Logger;
  /** Called after each change with the ids of the instances that are down now. */
  onChange(down: ReadonlySet<string>): void;
}

/** One probed instance and its recent results. */
interface Target {
  instance: string;
  /** `app/service`, for logs. */
  service: string;
  address: string;
  port: number;
  spec: ProbeSpec;
  /** The spec as text, to tell a changed one. */
  specKey: string;
  failures: number;
  successes: number;
  down: boolean;
  timer: NodeJS.Timeout | undefined;
  request: http.ClientRequest | undefined;
  stopped: boolean;
}

/** Probes the instances of every service in the table that asks for it. */
export class ActiveProber {
  readonly #options: ProberOptions;
  readonly #targets = new Map<string, Target>();
  readonly #down = new Set<string>();

  constructor(options: ProberOptions) {
    this.#options = options;
  }

  /** The instances down now. */
  get down(): ReadonlySet<string> {
    return this.#down;
  }

  /**
   * Follows a new table: starts probing new instances, stops probing the ones
   * that are gone (and forgets their verdict). An instance whose address or
   * probe changed starts over, keeping whether it was down.
   */
  update(table: RouteTable): void {
    const seen = new Set<string>();
    for (const backend of table.backends.values()) {
      if (backend.probe === null) continue;
      const specKey = JSON.stringify(backend.probe);
      for (const endpoint of backend.endpoints) {
        seen.add(endpoint.instance);
        const known = this.#targets.get(endpoint.instance);
        if (
          known !== undefined &&
          known.address === endpoint.address &&
          known.port === endpoint.port &&
          known.specKey === specKey
        ) {
          continue;
        }
        if (known !== undefined) stopTarget(known);
        const target: Target = {
          instance: endpoint.instance,
          service: backend.name,
          address: endpoint.address,
          port: endpoint.port,
          spec: backend.probe,
          specKey,
          failures: 0,
          successes: 0,
          down: known?.down ?? false,
          timer: undefined,
          request: undefined,
          stopped: false,
        };
        this.#targets.set(endpoint.instance, target);
        // Spread over the interval, so a table of many instances is not probed in one burst.
        this.#schedule(target, Math.random() * backend.probe.intervalMs);
      }
    }
    let changed = false;
    for (const [instance, target] of this.#targets) {
      if (seen.has(instance)) continue;
      stopTarget(target);
      this.#targets.delete(instance);
      if (this.#down.delete(instance)) changed = true;
    }
    if (changed) this.#options.onChange(this.#down);
  }

  /** Stops every probe. */
  close(): void {
    for (const target of this.#targets.values()) stopTarget(target);
    this.#targets.clear();
  }

  #schedule(target: Target, delayMs: number): void {
    target.timer = setTimeout(() => this.#probe(target), delayMs);
    target.timer.unref();
  }

  #probe(target: Target): void {
    target.timer = undefined;
    let finished = false;
    const finish = (passed: boolean, why: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      target.request = undefined;
      if (target.stopped) return;
      this.#record(target, passed, why);
      this.#schedule(target, target.spec.intervalMs);
    };
    // A fresh connection each time: the probe checks that the instance accepts one.
    const request = nodeHttp.request({
      host: target.address,
      port: target.port,
      path: target.spec.path,
      method: "GET",
      agent: false,
      headers: { "user-agent": "herd-gateway-probe", connection: "close" },
    });
    target.request = request;
    const deadline = setTimeout(() => {
      request.destroy();
      finish(false, `no answer within ${target.spec.timeoutMs} ms`);
    }, target.spec.timeoutMs);
    request.on("response", (res) => {
      res.resume();
      res.on("error", () => {});
      const status = res.statusCode ?? 0;
      finish(status >= 200 && status < 400, `status ${status}`);
    });
    request.on("error", (err: NodeJS.ErrnoException) => finish(false, err.code ?? err.message));
    request.end();
  }

  #record(target: Target, passed: boolean, why: string): void {
    const { logger } = this.#options;
    if (passed) {
      target.failures = 0;
      target.successes++;
      if (!target.down || target.successes < target.spec.healthyAfter) return;
      target.down = false;
      this.#down.delete(target.instance);
      logger.info("instance passes its health probes again; back in the rotation", {
        service: target.service,
        instance: target.instance,
      });
    } else {
      target.successes = 0;
      target.failures++;
      if (target.down || target.failures < target.spec.unhealthyAfter) return;
      target.down = true;
      this.#down.add(target.instance);
      logger.warn("instance fails its health probes; out of the rotation", {
        service: target.service,
        instance: target.instance,
        path: target.spec.path,
        reason: why,
        failures: target.failures,
      });
    }
    this.#options.onChange(this.#down);
  }
}

function stopTarget(target: Target): void {
  target.stopped = true;
  clearTimeout(target.timer);
  target.request?.destroy();
}

/**
 * Marks a table's endpoints with the probes' verdict: `endpoint.down`, and
 * per backend how many are down. Only services with a probe are touched.
 */
export function markDown(table: RouteTable, down: ReadonlySet<string>): void {
  for (const backend of table.backends.values()) {
    if (backend.probe === null) continue;
    let count = 0;
    for (const endpoint of backend.endpoints) {
      endpoint.down = down.has(endpoint.instance);
      if (endpoint.down) count++;
    }
    backend.down = count;
  }
}
