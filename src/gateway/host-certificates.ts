/**
 * Certificates for routed hosts, fetched from the control plane when a TLS
 * client first asks for one (SNI) and kept in this process:
 *
 *   handshake (SNI a.example.com) ─► static certificates (--tls-cert) name it? ─► that one
 *     ─► the route table serves the host? ─ no ─► the default certificate
 *     ─► cached and fresh ─► its context
 *     ─► GET /api/v1/gateways/certificates/a.example.com (one request per host at a time)
 *          ─► {cert, key, refreshAt} ─► SecureContext, kept until refreshAt
 *
 * A certificate past `refreshAt` keeps serving while its successor is
 * fetched (a renewal never stalls a handshake); one that fails to arrive is
 * tried again after 10 s. The control plane signs only hosts that some route
 * names (api/host-certificates.ts); the table check here saves it the asking.
 */

import tls, { type SecureContext } from "node:tls";
import type { Logger } from "../common/log.ts";
import { serversOf } from "../common/server-list.ts";

/** What the control plane answers for a host. */
interface HostCertificateBody {
  cert: string;
  key: string;
  refreshAt: number;
  notAfter: number;
}

interface Entry {
  context: SecureContext | undefined;
  /** Fetch again after this (ms since the epoch). */
  refreshAt: number;
  /** Expiry of the certificate held: past it, the default certificate serves until a new one arrives. */
  notAfter: number;
  fetching: Promise<void> | undefined;
}

/** Retry a failed fetch after this. */
const RETRY_MS = 10_000;

export interface OnDemandOptions {
  /** Control-plane base URL. */
  server: string;
  /** The gateway's bearer token. */
  token: string;
  logger: Logger;
  /** Whether some route serves `name` now (the table's knowsHost). */
  routed: (name: string) => boolean;
  /** Most hosts kept; past it the least recently fetched is dropped. Default 10,000. */
  maxHosts?: number;
  /**
   * Most fetches at once; a handshake for a host with nothing held past it
   * gets the default certificate (a flood of new names under a wildcard
   * route cannot queue unbounded work on the control plane). Default 16.
   */
  maxFetching?: number;
  now?: () => number;
}

/** The per-host certificates of one gateway process. */
export class OnDemandCertificates {
  readonly #o: OnDemandOptions;
  readonly #entries = new Map<string, Entry>();
  #fetching = 0;

  constructor(options: OnDemandOptions) {
    this.#o = options;
  }

  /** Whether this source may have a certificate for `name` (a routed host). */
  serves(name: string): boolean {
    return this.#o.routed(name);
  }

  /**
   * The context for `name` (a routed host, lowercased), or undefined when none
   * could be had (the caller serves its default). Waits only when nothing
   * usable is held yet.
   */
  async context(name: string): Promise<SecureContext | undefined> {
    const now = (this.#o.now ?? Date.now)();
    let entry = this.#entries.get(name);
    if (entry === undefined) {
      entry = { context: undefined, refreshAt: 0, notAfter: 0, fetching: undefined };
      this.#entries.set(name, entry);
      if (this.#entries.size > (this.#o.maxHosts ?? 10_000)) {
        this.#entries.delete(this.#entries.keys().next().value as string);
      }
    }
    const usable = entry.context !== undefined && entry.notAfter > now;
    if (now >= entry.refreshAt && entry.fetching === undefined) {
      if (this.#fetching >= (this.#o.maxFetching ?? 16)) return usable ? entry.context : undefined;
      this.#fetching++;
      entry.fetching = this.#fetch(name, entry).finally(() => {
        this.#fetching--;
        (entry as Entry).fetching = undefined;
      });
    }
    if (!usable && entry.fetching !== undefined) await entry.fetching;
    return entry.context !== undefined && entry.notAfter > now ? entry.context : undefined;
  }

  async #fetch(name: string, entry: Entry): Promise<void> {
    const now = (this.#o.now ?? Date.now)();
    try {
      const res = await serversOf(this.#o.server).request(
        `/api/v1/gateways/certificates/${encodeURIComponent(name)}`,
        {
          headers: { authorization: `Bearer ${this.#o.token}`, accept: "application/json" },
          signal: AbortSignal.timeout(10_000),
        },
      );
      if (!res.ok) {
        const text = await res.text().catch(() => "");
        throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
      }
      const body = (await res.json()) as HostCertificateBody;
      entry.context = tls.createSecureContext({ cert: body.cert, key: body.key });
      entry.notAfter = body.notAfter;
      entry.refreshAt = Math.max(now + 1_000, body.refreshAt);
    } catch (err) {
      entry.refreshAt = now + RETRY_MS;
      this.#o.logger.warn("no certificate for a routed host from the control plane; serving the default", {
        host: name,
        error: err,
      });
    }
  }
}
