/**
 * Events: the append-only record of every state change and its reason.
 * Keys are `<tenant>/<app>/<time-ordered id>` (`_` for none) so one app's
 * events list by prefix and every listing is in time order.
 */

import type { Clock } from "../common/clock.ts";
import { timeOrderedId } from "../common/ids.ts";
import type { Logger } from "../common/log.ts";
import type { Event } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

export type EventInput = Omit<Event, "id" | "time" | "type"> & {
  type?: Event["type"];
  /** When it happened (ms), for one recorded later than that (heartbeats' transitions); absent: now. */
  at?: number;
};

/** Listeners see every recorded event (the deploy log follows its deploy's events). */
export type EventListener = (event: Event) => void;

/** How many instances' messages a merged event lists (recordAll). */
const MAX_LISTED = 100;

/** One event for a group of the same transition of one service's instances. */
function merged(group: EventInput[]): EventInput {
  const first = group[0] as EventInput;
  if (group.length === 1) return first;
  const nodes = new Set(group.map((e) => e.node));
  const listed = group.slice(0, MAX_LISTED).map((e) => e.message);
  const more = group.length > MAX_LISTED ? `; and ${group.length - MAX_LISTED} more` : "";
  return {
    tenant: first.tenant,
    app: first.app,
    service: first.service,
    ...(nodes.size === 1 && first.node ? { node: first.node } : {}),
    reason: first.reason,
    ...(first.type ? { type: first.type } : {}),
    ...(first.at !== undefined
      ? { at: Math.min(...group.map((e) => e.at ?? Number.POSITIVE_INFINITY)) }
      : {}),
    message: `${group.length} instances: ${listed.join("; ")}${more}`,
    count: group.length,
    instances: group.flatMap((e) => (e.instance ? [e.instance] : [])).slice(0, MAX_LISTED),
  };
}

export class EventRecorder {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #listeners = new Set<EventListener>();
  /** Keep at most this many events per app (and for the platform). */
  readonly #keep: number;
  #sincePrune = 0;

  constructor(store: Store, clock: Clock, logger: Logger, keep = 2000) {
    this.#store = store;
    this.#clock = clock;
    this.#logger = logger;
    this.#keep = keep;
  }

  /** Records an event; never throws (an event that cannot be stored is logged). */
  async record(input: EventInput): Promise<Event> {
    const { at, ...fields } = input;
    const now = at ?? this.#clock.now();
    const event: Event = {
      ...fields,
      type: input.type ?? "normal",
      id: timeOrderedId(now),
      time: new Date(now).toISOString(),
    };
    const key = `${event.tenant ?? "_"}/${event.app ?? "_"}/${event.id}`;
    (event.type === "warning" ? this.#logger.warn : this.#logger.info)(event.message, {
      reason: event.reason,
      app: event.app,
      service: event.service,
      instance: event.instance,
      node: event.node,
    });
    try {
      await this.#store.put("event", key, event);
      if (++this.#sincePrune >= 200) {
        this.#sincePrune = 0;
        await this.#prune(`${event.tenant ?? "_"}/${event.app ?? "_"}/`);
      }
    } catch (err) {
      this.#logger.error("could not store event", { err, reason: event.reason });
    }
    for (const l of this.#listeners) l(event);
    return event;
  }

  /**
   * Records the events of transitions made at once (a placement round, one
   * heartbeat). Those of one service with the same reason become one event
   * naming every instance (up to MAX_LISTED; one with details stays apart), so a scale of 1,000 costs one
   * write here instead of 1,000; a transition alone is recorded as it is.
   */
  async recordAll(inputs: readonly EventInput[]): Promise<void> {
    const groups = new Map<string, EventInput[]>();
    for (const [n, input] of inputs.entries()) {
      // One with details (a crash's last log lines) keeps its own event.
      const key = input.details
        ? String(n)
        : JSON.stringify([input.tenant, input.app, input.service, input.reason, input.type]);
      const group = groups.get(key);
      if (group) group.push(input);
      else groups.set(key, [input]);
    }
    await Promise.all([...groups.values()].map((group) => this.record(merged(group))));
  }

  on(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Events in time order: one app's (tenant and app given), or the tenant's;
   * `platform`: with the platform's own (nodes, machines), which only a
   * platform admin may read (they name nodes, a tenant's user sees none).
   */
  async list(
    options: { tenant?: string; app?: string; limit?: number; platform?: boolean } = {},
  ): Promise<Event[]> {
    const prefix = options.app ? `${options.tenant ?? "default"}/${options.app}/` : undefined;
    const { items } = await this.#store.list<Event>("event", { prefix });
    const tenant = options.tenant ?? "default";
    // Without an app: this tenant's events (and the platform's own when asked), never another tenant's.
    const events = items
      .map((o) => o.value)
      .filter((e) => prefix || (e.tenant ? e.tenant === tenant : options.platform === true));
    if (!prefix) events.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const limit = options.limit ?? 100;
    return events.slice(Math.max(0, events.length - limit));
  }

  async #prune(prefix: string): Promise<void> {
    const { items } = await this.#store.list("event", { prefix });
    for (const o of items.slice(0, Math.max(0, items.length - this.#keep)))
      await this.#store.delete("event", o.key);
  }
}
