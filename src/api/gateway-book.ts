/**
 * What each gateway has applied, against the control plane's config version.
 *
 *   store watch (service, instance, node, route) ──► configVersion = revision of the last change
 *   PUT /gateways/:id/status (after each table change, and every 10 s) ──► entries
 *   GET /gateways ──► each entry with inSync = serving configVersion and nothing refused since
 *   scrapeTargets() ──► the metrics URL of every gateway not silent (the metrics scraper's discovered targets)
 *
 * Reports are kept in memory, not in the store: they are observations, not
 * desired state (like metrics), they arrive every few seconds from every
 * gateway, and a restarted control plane has them all again within one
 * report interval.
 */

import { isCode } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import { GATEWAY_KINDS, type GatewayReport, type GatewayStatus } from "../model/live-config.ts";
import type { ScrapeTarget } from "../observe/scrape.ts";
import type { Store } from "../store/store.ts";

/** A gateway that has not reported for this long is shown `silent`. */
export const SILENT_AFTER_MS = 30_000;
/** And is forgotten after this long. */
const FORGET_AFTER_MS = 10 * 60_000;

interface Entry {
  id: string;
  url?: string;
  workers?: number;
  metricsUrl?: string;
  version: number;
  routes: number;
  rejectedVersion?: number;
  error?: string;
  lastSeen: number;
}

/**
 * A gateway's metrics URL as the control plane reaches it: a loopback host
 * (its listener on 0.0.0.0 shows as 127.0.0.1) from a gateway on another
 * machine means that machine, so the report's source address stands in.
 */
export function metricsUrlFrom(
  url: string | undefined,
  remoteAddress: string | undefined,
): string | undefined {
  if (url === undefined || remoteAddress === undefined) return url;
  const loopback = (host: string) => host === "localhost" || host === "[::1]" || /^127\./.test(host);
  const remote = remoteAddress.replace(/^::ffff:/, "");
  if (remote === "::1" || loopback(remote)) return url;
  try {
    const u = new URL(url);
    if (!loopback(u.hostname)) return url;
    u.hostname = remote.includes(":") ? `[${remote}]` : remote;
    return u.toString();
  } catch {
    return url;
  }
}

/** The gateways' reports and the config version they are compared with. */
export class GatewayBook {
  readonly #store: Store;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #stop = new AbortController();
  #configVersion = 0;
  #following: Promise<void> | undefined;

  constructor(store: Store, logger: Logger, now: () => number = Date.now) {
    this.#store = store;
    this.#logger = logger;
    this.#now = now;
  }

  /** The revision of the last change to anything gateways build their tables from. */
  get configVersion(): number {
    return this.#configVersion;
  }

  /** Starts following the store; resolves once the current config version is known. */
  async start(): Promise<void> {
    const from = await this.#relist();
    this.#following = this.#follow(from);
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#following;
  }

  /** Records a report; returns the gateway as GET /gateways shows it. */
  report(id: string, report: GatewayReport): GatewayStatus {
    const entry: Entry = this.#entries.get(id) ?? { id, version: 0, routes: 0, lastSeen: 0 };
    entry.lastSeen = this.#now();
    entry.routes = report.routes;
    if (report.url !== undefined) entry.url = report.url;
    if (report.workers !== undefined) entry.workers = report.workers;
    if (report.metricsUrl !== undefined) entry.metricsUrl = report.metricsUrl;
    if (report.applied) {
      entry.version = report.version;
      if (entry.rejectedVersion !== undefined && report.version >= entry.rejectedVersion) {
        entry.rejectedVersion = undefined;
        entry.error = undefined;
      }
    } else {
      if (report.serving !== undefined) entry.version = report.serving;
      entry.rejectedVersion = report.version;
      entry.error = report.error ?? "refused without a reason";
    }
    this.#entries.set(id, entry);
    return this.#show(entry, entry.lastSeen);
  }

  /**
   * Waits until every gateway not silent serves `version` or later (the
   * config version when a deploy ended: its routes and instances are in the
   * tables then), at most `timeoutMs`. Resolves with the ids still behind
   * (none when all caught up, or when no gateway reports here).
   */
  async untilApplied(version: number, timeoutMs: number, signal?: AbortSignal): Promise<string[]> {
    const until = this.#now() + timeoutMs;
    for (;;) {
      const now = this.#now();
      const behind = [...this.#entries.values()]
        .filter(
          (e) =>
            now - e.lastSeen <= SILENT_AFTER_MS && (e.version < version || e.rejectedVersion !== undefined),
        )
        .map((e) => e.id);
      if (behind.length === 0 || now >= until || signal?.aborted) return behind;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Forgets a gateway (it stopped). Returns whether it was known. */
  remove(id: string): boolean {
    return this.#entries.delete(id);
  }

  /**
   * The metrics endpoint of every gateway that reports one and is not
   * silent: a gateway that says goodbye or goes quiet stops being scraped
   * (its series then go stale, as a vanished Prometheus target's do).
   */
  scrapeTargets(): ScrapeTarget[] {
    const now = this.#now();
    const out: ScrapeTarget[] = [];
    for (const e of this.#entries.values()) {
      if (e.metricsUrl === undefined || now - e.lastSeen > SILENT_AFTER_MS) continue;
      out.push({
        name: `herd-gateway/${e.id}`,
        url: e.metricsUrl,
        labels: { job: "herd-gateway", component: "gateway", gateway: e.id },
        createdAt: "",
      });
    }
    return out;
  }

  /** Every gateway heard from in the last ten minutes, by id. */
  list(): GatewayStatus[] {
    const now = this.#now();
    const out: GatewayStatus[] = [];
    for (const entry of [...this.#entries.values()].sort((a, b) => (a.id < b.id ? -1 : 1))) {
      if (now - entry.lastSeen > FORGET_AFTER_MS) this.#entries.delete(entry.id);
      else out.push(this.#show(entry, now));
    }
    return out;
  }

  #show(e: Entry, now: number): GatewayStatus {
    return {
      id: e.id,
      ...(e.url !== undefined ? { url: e.url } : {}),
      ...(e.workers !== undefined ? { workers: e.workers } : {}),
      ...(e.metricsUrl !== undefined ? { metricsUrl: e.metricsUrl } : {}),
      version: e.version,
      configVersion: this.#configVersion,
      inSync: e.rejectedVersion === undefined && e.version >= this.#configVersion,
      routes: e.routes,
      ...(e.rejectedVersion !== undefined ? { rejectedVersion: e.rejectedVersion, error: e.error } : {}),
      lastSeen: new Date(e.lastSeen).toISOString(),
      silent: now - e.lastSeen > SILENT_AFTER_MS,
    };
  }

  /** The config version from the objects (their last writes); returns the revision they were read at. */
  async #relist(): Promise<number> {
    let revision = 0;
    let latest = 0;
    for (const kind of GATEWAY_KINDS) {
      const list = await this.#store.list(kind);
      revision = Math.max(revision, list.revision);
      for (const o of list.items) latest = Math.max(latest, o.revision);
    }
    this.#configVersion = Math.max(this.#configVersion, latest);
    return revision;
  }

  /**
   * Follows changes. The history is read first (from revision 0 where it is
   * kept), so deletions made before this start count too; where it is
   * compacted, the last writes of the objects stand in for it.
   */
  async #follow(listedAt: number): Promise<void> {
    let from = 0;
    while (!this.#stop.signal.aborted) {
      try {
        for await (const event of this.#store.watch({
          kinds: [...GATEWAY_KINDS],
          fromRevision: from,
          signal: this.#stop.signal,
        })) {
          if (event.revision > this.#configVersion) this.#configVersion = event.revision;
          from = event.revision;
        }
        return;
      } catch (err) {
        if (this.#stop.signal.aborted) return;
        if (isCode(err, "gone")) {
          from = from === 0 ? listedAt : await this.#relist();
          continue;
        }
        this.#logger.warn("cannot follow the config version; retrying", { error: err });
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }
}
