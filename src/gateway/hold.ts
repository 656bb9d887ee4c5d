/**
 * Requests held for a service scaled to zero (`autoscale.min: 0`) while it
 * has no running instance: instead of a 503 the request waits, the control
 * plane is asked for an instance, and the request goes on as soon as a table
 * with a running (health-checked) endpoint of the service is swapped in.
 *
 *   chain.ts ENDPOINT: no endpoint, backend.scalesToZero ─► hold(x) ─┬─ queue full ─► 503 Retry-After
 *                                                                     └─ queued (per service, bounded)
 *        first of a burst ─► wake(service): POST /api/v1/apps/:app/services/:svc/wake
 *                            (failed: again in 1 s; answered: again every 5 s while requests wait)
 *   proxy.table = next ─► onTable(next): the service has an endpoint ─► release: chain.ts runs ENDPOINT again
 *   timeout (30 s) ─► 503 Retry-After          client left ─► dropped from the queue
 *
 * The count per service goes to the live load figures as it changes
 * (`LoadBook.setWaiting`: `waiting` in the gateway's report each second, so
 * the autoscaler does not call a service idle while requests wait for it);
 * `waiting()` and `waitingByService()` read it here.
 *
 * Bodies are not read while held: the request stream stays paused, so memory
 * is what Node and the socket buffer already hold. Upgrades (WebSocket) are
 * held the same way, their socket untouched until released. Each process of a
 * gateway (each worker) holds and asks for itself.
 */

import type { Logger } from "../common/log.ts";
import { serversOf } from "../common/server-list.ts";
import { expireHeld, releaseHeld } from "./chain.ts";
import type { Exchange } from "./exchange.ts";
import * as metrics from "./metrics.ts";
import type { ProxyContext } from "./proxy-context.ts";
import type { Backend, RouteTable } from "./route-table.ts";

/** Requests one service may have waiting in one gateway process, by default. */
export const DEFAULT_HOLD_MAX = 100;
/** How long a request waits for an instance, by default. */
export const DEFAULT_HOLD_TIMEOUT_MS = 30_000;
/** After a failed wake call: ask again this soon. */
const RETRY_MS = 1_000;
/** After an answered wake call: ask again this often while requests still wait (a scale-in may have raced it). */
const ASK_AGAIN_MS = 5_000;

/** Why a held request ends without an instance: none in time, its service no longer scales to zero (or is gone), its client left. */
type HoldEnd = "timeout" | "not_scaling_to_zero" | "gone";

/** How requests are held. */
export interface HoldOptions {
  /** Asks the control plane for an instance of `service` (`tenant/app/service`); rejects when the call failed. */
  wake: (service: string) => Promise<void>;
  logger: Logger;
  /** Requests one service may have waiting (per process). Default 100. */
  maxPerService?: number;
  /** How long a request waits, ms. Default 30 s. */
  timeoutMs?: number;
}

interface Held {
  readonly x: Exchange;
  readonly queue: ServiceQueue;
  timer: NodeJS.Timeout | undefined;
  readonly onGone: () => void;
}

interface ServiceQueue {
  readonly service: string;
  /** The proxy whose table's live load counters get the count (load-recorder.ts). */
  readonly proxy: ProxyContext;
  readonly held: Set<Held>;
  /** The next wake call (or the one in flight: `asking`). */
  timer: NodeJS.Timeout | undefined;
  asking: boolean;
}

/** The requests one gateway process holds, per service. */
export class HeldRequests {
  readonly maxPerService: number;
  readonly timeoutMs: number;
  readonly #wake: HoldOptions["wake"];
  readonly #logger: Logger;
  readonly #queues = new Map<string, ServiceQueue>();

  constructor(options: HoldOptions) {
    this.#wake = options.wake;
    this.#logger = options.logger;
    this.maxPerService = options.maxPerService ?? DEFAULT_HOLD_MAX;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS;
  }

  /** Requests of `service` (`tenant/app/service`) waiting for an instance now. */
  waiting(service: string): number {
    return this.#queues.get(service)?.held.size ?? 0;
  }

  /** Every service with requests waiting now, and how many. */
  waitingByService(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [service, queue] of this.#queues) out.set(service, queue.held.size);
    return out;
  }

  /**
   * Holds `x` until `backend`'s service has an endpoint; false when its
   * queue is full (the caller answers 503).
   */
  hold(x: Exchange, backend: Backend): boolean {
    const service = backend.service;
    let queue = this.#queues.get(service);
    if (queue === undefined) {
      queue = { service, proxy: x.proxy, held: new Set(), timer: undefined, asking: false };
      this.#queues.set(service, queue);
    }
    if (queue.held.size >= this.maxPerService) return false;
    const held: Held = {
      x,
      queue,
      timer: undefined,
      onGone: () => this.#end(held, "gone"),
    };
    held.timer = setTimeout(() => this.#end(held, "timeout"), this.timeoutMs);
    queue.held.add(held);
    counted(queue);
    (x.res ?? x.socket)?.once("close", held.onGone);
    // The first request of a burst asks; the rest wait for the same answer.
    if (!queue.asking && queue.timer === undefined) this.#ask(queue);
    return true;
  }

  /** A new table is serving: requests of services that have an endpoint there go on now. */
  onTable(table: RouteTable): void {
    if (this.#queues.size === 0) return;
    for (const [service, queue] of this.#queues) {
      const backend = table.backends.get(service);
      if (backend !== undefined && backend.endpoints.length > backend.down) {
        this.#drop(queue);
        for (const held of queue.held) {
          this.#unwatch(held);
          releaseHeld(held.x, backend);
        }
      } else if (backend === undefined || !backend.scalesToZero) {
        // The service is gone, or no longer scales to zero: nothing will wake it for them.
        for (const held of queue.held) this.#end(held, "not_scaling_to_zero");
      }
    }
  }

  /** Cuts every held request and stops every timer (the proxy is closing). */
  close(): void {
    for (const queue of this.#queues.values()) {
      for (const held of queue.held) {
        this.#unwatch(held);
        // A held upgrade's socket left the HTTP server's care: nobody else closes it.
        (held.x.res ?? held.x.socket)?.destroy();
      }
      this.#drop(queue);
    }
  }

  #ask(queue: ServiceQueue): void {
    queue.timer = undefined;
    if (queue.held.size === 0 || this.#queues.get(queue.service) !== queue) return;
    queue.asking = true;
    this.#wake(queue.service).then(
      () => this.#askAgain(queue, ASK_AGAIN_MS),
      (err: unknown) => {
        this.#logger.warn("cannot ask the control plane to wake a service; retrying", {
          service: queue.service,
          err,
        });
        this.#askAgain(queue, RETRY_MS);
      },
    );
  }

  #askAgain(queue: ServiceQueue, ms: number): void {
    queue.asking = false;
    if (queue.held.size === 0 || this.#queues.get(queue.service) !== queue) return;
    queue.timer = setTimeout(() => this.#ask(queue), ms);
    queue.timer.unref();
  }

  /** Ends one held request without an instance: answered 503, or just forgotten when its client left. */
  #end(held: Held, why: HoldEnd): void {
    const queue = held.queue;
    if (!queue.held.has(held)) return;
    this.#unwatch(held);
    if (queue.held.size === 0) this.#drop(queue);
    const x = held.x;
    if (why === "gone") {
      // Counted like a proxied request whose client left before the answer.
      x.series?.record(499, metrics.CLIENT_CLOSED, performance.now() - x.startedAt);
      return;
    }
    expireHeld(x, why, this.timeoutMs);
  }

  #unwatch(held: Held): void {
    clearTimeout(held.timer);
    held.queue.held.delete(held);
    counted(held.queue);
    (held.x.res ?? held.x.socket)?.off("close", held.onGone);
  }

  /** Forgets the queue (its waiting requests are taken care of by the caller). */
  #drop(queue: ServiceQueue): void {
    clearTimeout(queue.timer);
    queue.timer = undefined;
    if (this.#queues.get(queue.service) === queue) this.#queues.delete(queue.service);
  }
}

/** Tells the live load figures (`waiting` in each second's report) how many requests the queue holds. */
function counted(queue: ServiceQueue): void {
  queue.proxy.table.load.setWaiting(queue.service, queue.held.size);
}

/**
 * The wake call of one gateway: `POST /api/v1/apps/:app/services/:svc/wake?tenant=`
 * with its credential. Rejects on a network error or a 5xx (the caller retries);
 * a 4xx (the service does not scale to zero, or is gone) is logged and resolves.
 */
export function wakeByControlPlane(control: {
  server: string;
  token: string;
  logger: Logger;
}): (service: string) => Promise<void> {
  const servers = serversOf(control.server);
  return async (service) => {
    const [tenant, app, name] = service.split("/");
    const path = `/api/v1/apps/${encodeURIComponent(app)}/services/${encodeURIComponent(name)}/wake?tenant=${encodeURIComponent(tenant)}`;
    // node:http, as every call of the gateway to the control plane (common/api-request.ts: no global fetch).
    const res = await servers.request(path, {
      method: "POST",
      headers: { authorization: `Bearer ${control.token}` },
      signal: AbortSignal.timeout(5_000),
    });
    const text = await res.text();
    if (res.status >= 500) throw new Error(`POST ${path} answered ${res.status}: ${text.slice(0, 200)}`);
    if (!res.ok)
      control.logger.warn("the control plane refused to wake a service", { service, answer: text });
  };
}
