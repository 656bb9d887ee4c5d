/**
 * Agents' long poll: an agent keeps `GET /nodes/:name/wait?since=R` open and
 * heartbeats as soon as it returns, so a new desired instance (a wake, a
 * deploy, a replacement) starts at once instead of on the next heartbeat.
 *
 *   store watch (instances) ─► what an agent is told changed? (new, gone, desired, generation, drain, node)
 *                           ─► changedAt[node] = revision ─► open waits of that node return {revision}
 *   store watch (config_head <tenant>/<app>) ─► every node with an instance of that app
 *                           ─► changedAt[node] = revision (its agent fetches the new config version at once)
 *
 * The agent's own status writes (state, port) change nothing an agent is
 * told, so they wake nobody. `revision` is the store revision of the node's
 * last such change (at least the revision the watch started from, so an
 * agent that waited on an earlier server process heartbeats once more).
 */

import { HerdError } from "../common/errors.ts";
import type { ConfigHead } from "../model/config.ts";
import type { Instance } from "../model/objects.ts";
import type { Store, WatchEvent } from "../store/store.ts";

/** What of an instance its agent is told, as one string: a change of it is a change for the agent. */
function told(i: Instance): string {
  return `${i.node ?? ""} ${i.desired} ${i.generation} ${i.drainUntil ?? ""} ${i.release}`;
}

export class NodeWaits {
  readonly #store: Store;
  readonly #signal: AbortSignal;
  readonly #warn: (message: string, err: unknown) => void;
  /** Per instance id: its node, its `<tenant>/<app>`, and what its agent is told. */
  readonly #instances = new Map<string, { node: string | null; app: string; told: string }>();
  /** Per node: the revision of its last change. */
  readonly #changedAt = new Map<string, number>();
  /** Per node: the open waits. */
  readonly #waiters = new Map<string, Set<(revision: number) => void>>();
  /** The revision the watch started from: the floor of every node's changedAt. */
  #floor = 0;
  #started: Promise<void> | undefined;

  constructor(store: Store, signal: AbortSignal, warn: (message: string, err: unknown) => void) {
    this.#store = store;
    this.#signal = signal;
    this.#warn = warn;
    // One listener ends every open wait when the server closes: one per wait on this shared signal
    // made each add and remove walk thousands of listeners (EventTarget checks for duplicates).
    signal.addEventListener(
      "abort",
      () => {
        for (const [node, waiters] of [...this.#waiters]) {
          for (const done of [...waiters]) done(this.#changedAt.get(node) ?? this.#floor);
        }
      },
      { once: true },
    );
  }

  /**
   * Resolves with the node's change revision once it is above `since` (at
   * once when it already is, or when `since` is undefined), or after
   * `timeoutMs`, or when `signal` aborts (the agent left).
   */
  async wait(
    node: string,
    since: number | undefined,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<number> {
    this.#started ??= this.#follow();
    await this.#started;
    const now = this.#changedAt.get(node) ?? this.#floor;
    if (since === undefined || now > since || this.#signal.aborted || signal.aborted) return now;
    return new Promise((resolve) => {
      let waiters = this.#waiters.get(node);
      if (waiters === undefined) {
        waiters = new Set();
        this.#waiters.set(node, waiters);
      }
      const set = waiters;
      const done = (revision: number) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", leave);
        set.delete(done);
        if (set.size === 0 && this.#waiters.get(node) === set) this.#waiters.delete(node);
        resolve(revision);
      };
      const leave = () => done(this.#changedAt.get(node) ?? this.#floor);
      const timer = setTimeout(leave, timeoutMs);
      signal.addEventListener("abort", leave, { once: true });
      set.add(done);
    });
  }

  /** Lists the instances, then follows their changes until the server closes (relisting when the watch is gone). */
  async #follow(): Promise<void> {
    const listed = await this.#list();
    void (async () => {
      let from = listed;
      while (!this.#signal.aborted) {
        try {
          for await (const event of this.#store.watch<Instance | ConfigHead>({
            kinds: ["instance", "config_head"],
            fromRevision: from,
            signal: this.#signal,
          })) {
            this.#apply(event);
            from = event.revision;
          }
          return;
        } catch (err) {
          if (this.#signal.aborted) return;
          if (err instanceof HerdError && err.code === "gone") {
            from = await this.#list();
            // Whatever changed meanwhile is unknown: every waiting agent heartbeats once.
            for (const node of [...this.#waiters.keys()]) this.#changed(node, from);
            continue;
          }
          this.#warn("agents' wait: the instance watch failed; following again in 1 s", err);
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    })();
  }

  async #list(): Promise<number> {
    const { items, revision } = await this.#store.list<Instance>("instance");
    this.#instances.clear();
    for (const o of items)
      this.#instances.set(o.value.id, {
        node: o.value.node,
        app: `${o.value.tenant}/${o.value.app}`,
        told: told(o.value),
      });
    this.#floor = revision;
    return revision;
  }

  #apply(event: WatchEvent<Instance | ConfigHead>): void {
    if (event.object.kind === "config_head") {
      this.#configChanged(event.object.key, event.revision);
      return;
    }
    const i = event.object.value as Instance;
    const before = this.#instances.get(i.id);
    if (event.type === "delete") {
      this.#instances.delete(i.id);
      if (before?.node) this.#changed(before.node, event.revision);
      return;
    }
    const now = { node: i.node, app: `${i.tenant}/${i.app}`, told: told(i) };
    this.#instances.set(i.id, now);
    if (before?.told === now.told) return;
    if (now.node) this.#changed(now.node, event.revision);
    if (before?.node && before.node !== now.node) this.#changed(before.node, event.revision);
  }

  /** An app's config head moved (a new, gray, promoted or aborted version): each node running it heartbeats. */
  #configChanged(app: string, revision: number): void {
    const nodes = new Set<string>();
    for (const i of this.#instances.values()) if (i.app === app && i.node) nodes.add(i.node);
    for (const node of nodes) this.#changed(node, revision);
  }

  #changed(node: string, revision: number): void {
    this.#changedAt.set(node, revision);
    const waiters = this.#waiters.get(node);
    if (waiters === undefined) return;
    for (const done of [...waiters]) done(revision);
  }
}
