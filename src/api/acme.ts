/**
 * Certificates from an ACME server (Let's Encrypt, or any RFC 8555 CA) for
 * the routed hosts under the domains the server was told to use ACME for
 * (`--acme-directory URL --acme-email E --acme-domain D`). The control plane
 * orders them; gateways fetch them (GET /gateways/certificates/:host) and
 * answer the HTTP-01 challenges (GET /gateways/acme-challenges/:token).
 *
 *   pass (at start, every hour, and soon after a gateway asks for a host without one):
 *     routed hosts under --acme-domain ─► no certificate, or 2/3 of its life gone?
 *       ─► acme-client auto(): order ─► challenge token ─► this.#challenges
 *          ◄── ACME server GET http://host/.well-known/acme-challenge/T ◄── gateway asks us
 *       ─► certificate + key sealed in the secret store (`_herd/_acme/cert.<host>`): every
 *          gateway and every later start sees the same one
 *
 * The account key is a secret too (`_herd/_acme/account`). A host whose
 * order fails is tried again after `retryMs` (doubling up to an hour).
 */

import { X509Certificate } from "node:crypto";
import https from "node:https";
import { rootCertificates } from "node:tls";
import * as acme from "acme-client";
import type { Logger } from "../common/log.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import { type IssuedCertificate, renewDue } from "./local-ca.ts";

/** Where ACME secrets live in the secret store: a tenant no one can create (names never start with `_`). */
const TENANT = "_herd";
const SCOPE = "_acme";
const ACTOR = "herd:acme";

/** How the server uses ACME. */
export interface AcmeSettings {
  /** The ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory. */
  directory: string;
  /** The account's contact address. */
  email?: string;
  /** Hosts under these domains (the domain itself and its subdomains) get ACME certificates. */
  domains: string[];
  /** PEM of a CA to trust for the directory's HTTPS besides the public ones (a test server). */
  ca?: string;
}

export interface AcmeManagerOptions {
  settings: AcmeSettings;
  secrets: SecretStore;
  /** The hosts routes name now (exact names; wildcards cannot be validated by HTTP-01). */
  routedHosts: () => Promise<string[]>;
  logger: Logger;
  /** Time between passes. Default 1 h. */
  intervalMs?: number;
  /** First wait before a failed host is tried again (doubles up to `intervalMs`). Default 30 s. */
  retryMs?: number;
  now?: () => number;
}

/** Whether `host` is `domain` or below it. */
export function underDomain(host: string, domain: string): boolean {
  return host === domain || host.endsWith(`.${domain}`);
}

/** Orders and renews ACME certificates for routed hosts; holds the HTTP-01 answers while an order runs. */
export class AcmeManager {
  readonly #o: AcmeManagerOptions;
  readonly #domains: string[];
  readonly #challenges = new Map<string, string>();
  readonly #certs = new Map<string, IssuedCertificate>();
  readonly #failures = new Map<string, { at: number; wait: number }>();
  #client: Promise<acme.Client> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(options: AcmeManagerOptions) {
    this.#o = options;
    this.#domains = options.settings.domains.map((d) => d.toLowerCase().replace(/\.$/, ""));
  }

  /** Whether `host` should get an ACME certificate. */
  covers(host: string): boolean {
    return !host.startsWith("*.") && this.#domains.some((d) => underDomain(host, d));
  }

  /** The key authorization for an HTTP-01 token of an order in progress. */
  challenge(token: string): string | undefined {
    return this.#challenges.get(token);
  }

  /** The ACME certificate of `host`, when one was issued (read from the secret store once, then kept). */
  async current(host: string): Promise<IssuedCertificate | undefined> {
    const known = this.#certs.get(host);
    if (known !== undefined) return known;
    let text: string;
    try {
      text = await this.#o.secrets.value(TENANT, SCOPE, certName(host));
    } catch {
      return undefined;
    }
    const stored = JSON.parse(text) as IssuedCertificate;
    this.#certs.set(host, stored);
    return stored;
  }

  /** Runs a pass now, and one every `intervalMs` (again after close: a server that leads again). */
  start(): void {
    this.#closed = false;
    this.kick();
  }

  /** A pass soon (one at a time; a kick during a pass runs another after it). */
  kick(): void {
    if (this.#closed) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    this.#running = this.#pass()
      .catch((err) => this.#o.logger.warn("ACME pass failed", { error: err }))
      .finally(() => {
        this.#running = undefined;
        if (this.#closed) return;
        if (this.#again) {
          this.#again = false;
          this.kick();
          return;
        }
        this.#timer = setTimeout(() => this.kick(), this.#nextWait());
        this.#timer.unref();
      });
  }

  /** Stops the timer and waits for a pass in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** Until the next pass: the interval, or sooner when a failed host's retry comes first. */
  #nextWait(): number {
    const interval = this.#o.intervalMs ?? 3_600_000;
    const now = this.#now();
    let wait = interval;
    for (const f of this.#failures.values()) wait = Math.min(wait, Math.max(1_000, f.at + f.wait - now));
    return wait;
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  async #pass(): Promise<void> {
    const hosts = [...new Set((await this.#o.routedHosts()).map((h) => h.toLowerCase()))].filter((h) =>
      this.covers(h),
    );
    for (const host of hosts) {
      if (this.#closed) return;
      const cert = await this.current(host);
      if (cert !== undefined && !renewDue(cert, this.#now())) continue;
      const failed = this.#failures.get(host);
      if (failed !== undefined && this.#now() < failed.at + failed.wait) continue;
      try {
        await this.#order(host);
        this.#failures.delete(host);
      } catch (err) {
        const wait = Math.min(
          this.#o.intervalMs ?? 3_600_000,
          failed ? failed.wait * 2 : (this.#o.retryMs ?? 30_000),
        );
        this.#failures.set(host, { at: this.#now(), wait });
        this.#o.logger.warn("ACME certificate order failed; trying again later", {
          host,
          retryInMs: wait,
          error: err,
        });
      }
    }
  }

  async #order(host: string): Promise<void> {
    const client = await this.#account();
    const [key, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] });
    this.#o.logger.info("ordering an ACME certificate", { host, directory: this.#o.settings.directory });
    const cert = await client.auto({
      csr,
      email: this.#o.settings.email,
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      // The ACME server checks the challenge; acme-client's own check would go to port 80 of the host.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        this.#challenges.set(challenge.token, keyAuthorization);
      },
      challengeRemoveFn: async (_authz, challenge) => {
        this.#challenges.delete(challenge.token);
      },
    });
    const x509 = new X509Certificate(cert);
    const issued: IssuedCertificate = {
      cert,
      key: key.toString(),
      notBefore: x509.validFromDate.getTime(),
      notAfter: x509.validToDate.getTime(),
    };
    await this.#o.secrets.set(TENANT, SCOPE, certName(host), JSON.stringify(issued), ACTOR);
    this.#certs.set(host, issued);
    this.#o.logger.info("ACME certificate issued", { host, notAfter: x509.validTo });
  }

  /** The ACME client with the account key from the secret store (made and stored on first use). */
  #account(): Promise<acme.Client> {
    this.#client ??= (async () => {
      let accountKey: string;
      try {
        accountKey = await this.#o.secrets.value(TENANT, SCOPE, "account");
      } catch {
        accountKey = (await acme.crypto.createPrivateEcdsaKey()).toString();
        await this.#o.secrets.set(TENANT, SCOPE, "account", accountKey, ACTOR);
      }
      if (this.#o.settings.ca !== undefined) {
        acme.axios.defaults.httpsAgent = new https.Agent({ ca: [...rootCertificates, this.#o.settings.ca] });
      }
      return new acme.Client({ directoryUrl: this.#o.settings.directory, accountKey });
    })();
    this.#client.catch(() => {
      this.#client = undefined;
    });
    return this.#client;
  }
}

function certName(host: string): string {
  return `cert.${host}`;
}
