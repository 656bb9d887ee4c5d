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

export type EventInput = Omit<Event, "id" | "time" | "type"> & { type?: Event["type"] };

/** Listeners see every recorded event (the deploy log follows its deploy's events). */
export type EventListener = (event: Event) => void;

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
    const now = this.#clock.now();
    const event: Event = {
      ...input,
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

  on(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Events in time order: one app's (tenant and app given), or everyone's. */
  async list(options: { tenant?: string; app?: string; limit?: number } = {}): Promise<Event[]> {
    const prefix = options.app ? `${options.tenant ?? "default"}/${options.app}/` : undefined;
    const { items } = await this.#store.list<Event>("event", { prefix });
    const tenant = options.tenant ?? "default";
    // Without an app: this tenant's events and the platform's own (nodes), never another tenant's.
    const events = items.map((o) => o.value).filter((e) => prefix || !e.tenant || e.tenant === tenant);
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
