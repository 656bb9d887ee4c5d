/**
 * The certificate a gateway serves for a host (GET /gateways/certificates/:host):
 * the host's ACME certificate when it has one (acme.ts), else one signed by
 * herd's own CA (local-ca.ts). Only hosts that some route names get one:
 * a client's SNI name never makes herd sign anything else.
 *
 *   gateway SNI miss ─► GET /gateways/certificates/shop.example.com
 *     ─► routed? (services' routes, route objects; exact or *.suffix) ─ no ─► 404
 *     ─► ACME covers it and has one ─► {source: "acme"}
 *     ─► else LocalCa.issue ─► {source: "local"} (an ACME host still waiting: refresh soon, and a pass kicked)
 */

import { join } from "node:path";
import type { Logger } from "../common/log.ts";
import type { RouteObject } from "../model/live-config.ts";
import type { ServiceSpec } from "../model/manifest.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import type { Store } from "../store/store.ts";
import type { AcmeManager, AcmeSettings } from "./acme.ts";
import { type IssuedCertificate, LocalCa } from "./local-ca.ts";

/** What a gateway gets for a host. */
export interface HostCertificate extends IssuedCertificate {
  host: string;
  source: "acme" | "local";
  /** Ask again after this time (ms since the epoch): sooner while an ACME order is pending. */
  refreshAt: number;
}

/** How long a gateway keeps a certificate before asking again (a renewed one then reaches it). */
const REFRESH_MS = 3_600_000;
/** While an ACME certificate is on its way. */
const PENDING_REFRESH_MS = 5_000;

/** The hosts routes name now: services' routes and routes set through the API (lowercased, `*.x` kept). */
export async function routedHosts(store: Store): Promise<string[]> {
  const hosts = new Set<string>();
  for (const o of (await store.list<{ spec?: ServiceSpec }>("service")).items) {
    for (const r of o.value.spec?.routes ?? []) hosts.add(r.host.toLowerCase());
  }
  for (const o of (await store.list<RouteObject>("route")).items) {
    if (typeof o.value.spec?.host === "string") hosts.add(o.value.spec.host.toLowerCase());
  }
  return [...hosts];
}

/** Whether `name` is one of `hosts`, or under one of its wildcards (`*.x` serves `a.x` and `a.b.x`, as the gateway routes). */
export function hostRouted(hosts: Iterable<string>, name: string): boolean {
  for (const h of hosts) {
    if (h === name) return true;
    if (h.startsWith("*.") && name.endsWith(h.slice(1)) && name.length > h.length - 1) return true;
  }
  return false;
}

/** The control plane's side of gateways' certificates. */
export class HostCertificates {
  readonly #store: Store;
  readonly #ca: LocalCa;
  readonly acme: AcmeManager | undefined;
  readonly #now: () => number;

  constructor(options: { store: Store; ca: LocalCa; acme?: AcmeManager; now?: () => number }) {
    this.#store = options.store;
    this.#ca = options.ca;
    this.acme = options.acme;
    this.#now = options.now ?? Date.now;
  }

  /** Begins ACME passes (when the server uses ACME); again after a stop when this server leads again. */
  start(): void {
    this.acme?.start();
  }

  /** Stops ACME passes, waiting for one in progress. */
  async stop(): Promise<void> {
    await this.acme?.close();
  }

  /** The certificate for `host` (lowercase, no trailing dot); undefined when no route names it. */
  async forHost(host: string): Promise<HostCertificate | undefined> {
    if (!hostRouted(await routedHosts(this.#store), host)) return undefined;
    const now = this.#now();
    let pending = false;
    if (this.acme?.covers(host)) {
      const cert = await this.acme.current(host);
      if (cert !== undefined && cert.notAfter > now) {
        return { host, source: "acme", ...cert, refreshAt: Math.min(now + REFRESH_MS, cert.notAfter) };
      }
      pending = true;
      this.acme.kick();
    }
    const local = await this.#ca.issue(host, now);
    return {
      host,
      source: "local",
      ...local,
      refreshAt: now + (pending ? PENDING_REFRESH_MS : REFRESH_MS),
    };
  }
}

/**
 * The control plane's HostCertificates: the CA in `<dataDir>/tls` (made on
 * first start) and, with `acme`, the ACME manager (its passes begin at `start`;
 * the ACME client is imported only then).
 */
export async function openHostCertificates(options: {
  store: Store;
  secrets: SecretStore;
  dataDir: string;
  logger: Logger;
  acme?: AcmeSettings;
}): Promise<HostCertificates> {
  const { store } = options;
  // acme-client (with axios and node-forge, about 10 MB) is loaded only when ACME is on.
  const acme =
    options.acme &&
    new (await import("./acme.ts")).AcmeManager({
      settings: options.acme,
      secrets: options.secrets,
      routedHosts: () => routedHosts(store),
      logger: options.logger.child("acme"),
    });
  return new HostCertificates({ store, ca: await LocalCa.open(join(options.dataDir, "tls")), acme });
}
