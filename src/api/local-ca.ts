/**
 * herd's own certificate authority, made once in `<data>/tls/` and shared by
 * the API (api/tls.ts) and the gateway's hosts: the control plane signs a
 * certificate for each routed host when a gateway first needs it, so every
 * `https://<app>.localhost` verifies with the one CA file.
 *
 *   <data>/tls/ca-cert.pem   the CA certificate: give it to clients (curl --cacert, NODE_EXTRA_CA_CERTS)
 *   <data>/tls/ca-key.pem    its key (0600): never leaves the data dir
 *
 * Host certificates are kept in memory only (any of them can be signed
 * again, and every one verifies with the same CA); one host is signed once
 * even when several gateways ask at the same moment.
 */

import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { writePrivateFile } from "../common/private-file.ts";
import {
  generateCertificate,
  type IssuedCertificate,
  type ServerNames,
  signServerCertificate,
} from "../common/server-certificate.ts";

export type { IssuedCertificate, ServerNames };
export { signServerCertificate };

const DAY_MS = 86_400_000;
/** Host certificates' lifetime; they are signed again once two thirds of it have passed. */
export const HOST_CERT_DAYS = 90;

/** The CA's files and parsed certificate. */
export interface CaFiles {
  file: string;
  cert: string;
  key: string;
  x509: X509Certificate;
}

/** The CA in `dir`, made once (10 years; made again only when missing, damaged or within 30 days of expiry). */
export async function ensureCa(dir: string): Promise<CaFiles> {
  const file = join(dir, "ca-cert.pem");
  const keyFile = join(dir, "ca-key.pem");
  const current = readPair(file, keyFile);
  if (current) return { file, ...current };
  const notBefore = new Date(Date.now() - 3_600_000);
  const pems = await generateCertificate([{ name: "commonName", value: `herd CA ${hostname()}` }], {
    keyType: "ec",
    algorithm: "sha256",
    notBeforeDate: notBefore,
    notAfterDate: new Date(notBefore.getTime() + 3650 * DAY_MS),
    extensions: [
      { name: "basicConstraints", cA: true, pathLenConstraint: 0, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  writePrivateFile(keyFile, pems.private);
  // The certificate is public; 0600 like the key does no harm and keeps one way of writing.
  writePrivateFile(file, pems.cert);
  return { file, cert: pems.cert, key: pems.private, x509: new X509Certificate(pems.cert) };
}

/** A certificate and key that parse and are valid for 30 more days; undefined otherwise. */
export function readPair(
  certFile: string,
  keyFile: string,
): { cert: string; key: string; x509: X509Certificate } | undefined {
  try {
    const cert = readFileSync(certFile, "utf8");
    const key = readFileSync(keyFile, "utf8");
    const x509 = new X509Certificate(cert);
    if (x509.validToDate.getTime() < Date.now() + 30 * DAY_MS) return undefined;
    return { cert, key, x509 };
  } catch {
    return undefined;
  }
}

/**
 * The gateway's default certificate under `herd up` (clients without SNI,
 * names no route serves): `localhost`, `127.0.0.1` and `::1`, signed by the
 * CA in `dir` and kept there (`localhost-cert.pem`, `localhost-key.pem`
 * 0600). Made again when missing, near expiry or signed by another CA.
 */
export async function ensureLocalhostCertificate(
  dir: string,
): Promise<{ cert: string; key: string; ca: string }> {
  const ca = await ensureCa(dir);
  const files = { cert: join(dir, "localhost-cert.pem"), key: join(dir, "localhost-key.pem") };
  const current = readPair(files.cert, files.key);
  if (current?.x509.checkIssued(ca.x509) && current.x509.verify(ca.x509.publicKey)) {
    return { ...files, ca: ca.file };
  }
  const issued = await signServerCertificate(
    ca,
    "localhost",
    { dns: ["localhost"], ips: ["127.0.0.1", "::1"] },
    825,
  );
  writePrivateFile(files.key, issued.key);
  writePrivateFile(files.cert, issued.cert);
  return { ...files, ca: ca.file };
}

/**
 * The CA that signs routed hosts' certificates for gateways. `issue` is
 * called only for hosts the caller has checked are routed (host-certificates.ts).
 */
export class LocalCa {
  /** The CA certificate's file: what clients trust. */
  readonly file: string;
  /** The CA certificate (PEM), as in `file`. */
  readonly cert: string;
  readonly #ca: { cert: string; key: string };
  readonly #days: number;
  readonly #issued = new Map<string, Promise<IssuedCertificate>>();
  /** Most host certificates kept; past it the oldest is dropped (signed again when asked). */
  readonly #max: number;

  private constructor(ca: CaFiles, days: number, max: number) {
    this.file = ca.file;
    this.cert = ca.cert;
    this.#ca = { cert: ca.cert, key: ca.key };
    this.#days = days;
    this.#max = max;
  }

  /** The CA in `dir` (made when missing). `days`: host certificates' lifetime. */
  static async open(dir: string, options: { days?: number; max?: number } = {}): Promise<LocalCa> {
    return new LocalCa(await ensureCa(dir), options.days ?? HOST_CERT_DAYS, options.max ?? 10_000);
  }

  /** A certificate for `host` (a DNS name or an IP address), signed once and kept until two thirds of its life have passed. */
  issue(host: string, now = Date.now()): Promise<IssuedCertificate> {
    const cached = this.#issued.get(host);
    if (cached !== undefined) {
      return cached.then((c) => (renewDue(c, now) ? this.#sign(host) : c));
    }
    return this.#sign(host);
  }

  /** How many host certificates are kept now. */
  get size(): number {
    return this.#issued.size;
  }

  #sign(host: string): Promise<IssuedCertificate> {
    // An IP address (a registry's, registry-credentials.ts) goes in as one; a routed host as a DNS name.
    const names = isIP(host) ? { dns: [], ips: [host] } : { dns: [host], ips: [] };
    const signing = signServerCertificate(this.#ca, host, names, this.#days);
    this.#issued.delete(host);
    this.#issued.set(host, signing);
    signing.catch(() => this.#issued.delete(host));
    if (this.#issued.size > this.#max) {
      const oldest = this.#issued.keys().next().value as string;
      this.#issued.delete(oldest);
    }
    return signing;
  }
}

/** Whether a certificate is past two thirds of its lifetime (time to get a new one). */
export function renewDue(c: Pick<IssuedCertificate, "notBefore" | "notAfter">, now = Date.now()): boolean {
  return now >= c.notBefore + ((c.notAfter - c.notBefore) * 2) / 3;
}
