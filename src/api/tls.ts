/**
 * TLS for the API (`herd server --tls`, `herd up --tls`): a certificate
 * authority herd makes once in the data dir, and a server certificate it
 * signs for the names clients use. The CLI, agents and gateways trust the CA
 * file (`--ca`, or the data dir's copy on this machine).
 *
 *   <data>/tls/ca-cert.pem   the CA certificate: copy it to every machine that calls the API
 *   <data>/tls/ca-key.pem    its key (0600): never leaves the data dir
 *   <data>/tls/api-cert.pem  the API's certificate, signed by the CA: 127.0.0.1, ::1, localhost, this host's name
 *   <data>/tls/api-key.pem   its key (0600); made again when a name is missing or it expires within 30 days
 */

import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import { writePrivateFile } from "../common/private-file.ts";

/** selfsigned (and @peculiar/x509 under it: ~20 MB) is loaded only when a certificate is made. */
const generate: typeof import("selfsigned").generate = async (...args) =>
  (await import("selfsigned")).generate(...args);

/** The PEM text the API server needs, and where the CA certificate is. */
export interface ApiTls {
  cert: string;
  key: string;
  /** The CA certificate (PEM) and its file. */
  ca: string;
  caFile: string;
}

const DAY_MS = 86_400_000;

/**
 * The API's CA and server certificate in `dir`, made when missing. `host` is
 * the address the API listens on: a specific one is added to the names; for
 * 0.0.0.0 every address of this machine is.
 */
export async function ensureApiTls(dir: string, host: string): Promise<ApiTls> {
  const ca = await ensureCa(dir);
  const names = serverNames(host);
  const certFile = join(dir, "api-cert.pem");
  const keyFile = join(dir, "api-key.pem");
  const current = readPair(certFile, keyFile);
  if (current && covers(current.x509, names) && current.x509.checkIssued(ca.x509)) {
    return { cert: current.cert, key: current.key, ca: ca.cert, caFile: ca.file };
  }
  const notBefore = new Date(Date.now() - 3_600_000); // an hour of slack for clocks behind
  const pems = await generate([{ name: "commonName", value: `herd API ${hostname()}` }], {
    keyType: "ec",
    algorithm: "sha256",
    notBeforeDate: notBefore,
    notAfterDate: new Date(notBefore.getTime() + 825 * DAY_MS),
    ca: { cert: ca.cert, key: ca.key },
    extensions: [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      {
        name: "subjectAltName",
        altNames: [
          ...names.dns.map((value) => ({ type: 2 as const, value })),
          ...names.ips.map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  });
  writePrivateFile(keyFile, pems.private);
  writePrivateFile(certFile, pems.cert);
  return { cert: pems.cert, key: pems.private, ca: ca.cert, caFile: ca.file };
}

/** The CA in `dir`, made once (10 years). */
async function ensureCa(
  dir: string,
): Promise<{ file: string; cert: string; key: string; x509: X509Certificate }> {
  const file = join(dir, "ca-cert.pem");
  const keyFile = join(dir, "ca-key.pem");
  const current = readPair(file, keyFile);
  if (current) return { file, ...current };
  const notBefore = new Date(Date.now() - 3_600_000);
  const pems = await generate([{ name: "commonName", value: `herd CA ${hostname()}` }], {
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
function readPair(
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

/** The names the API certificate serves. */
function serverNames(host: string): { dns: string[]; ips: string[] } {
  const dns = new Set(["localhost", hostname().toLowerCase()]);
  const ips = new Set(["127.0.0.1", "::1"]);
  if (host === "0.0.0.0" || host === "::") {
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) if (!a.address.startsWith("fe80:")) ips.add(a.address);
    }
  } else if (isIP(host)) ips.add(host);
  else dns.add(host.toLowerCase());
  return { dns: [...dns], ips: [...ips] };
}

function covers(x509: X509Certificate, names: { dns: string[]; ips: string[] }): boolean {
  return (
    names.dns.every((n) => x509.checkHost(n, { wildcards: false }) !== undefined) &&
    names.ips.every((ip) => x509.checkIP(ip) !== undefined)
  );
}
