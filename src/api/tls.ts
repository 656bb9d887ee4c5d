/**
 * TLS for the API (`herd server --tls`, `herd up --tls`): the certificate
 * authority herd makes once in the data dir (local-ca.ts, shared with the gateway's hosts), and a server certificate it
 * signs for the names clients use. The CLI, agents and gateways trust the CA
 * file (`--ca`, or the data dir's copy on this machine).
 *
 *   <data>/tls/ca-cert.pem   the CA certificate: copy it to every machine that calls the API
 *   <data>/tls/ca-key.pem    its key (0600): never leaves the data dir
 *   <data>/tls/api-cert.pem  the API's certificate, signed by the CA: 127.0.0.1, ::1, localhost, this host's name
 *   <data>/tls/api-key.pem   its key (0600); made again when a name is missing or it expires within 30 days
 */

import type { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import { writePrivateFile } from "../common/private-file.ts";
import { ensureCa, readPair, type ServerNames, signServerCertificate } from "./local-ca.ts";

/** The PEM text the API server needs, and where the CA certificate is. */
export interface ApiTls {
  cert: string;
  key: string;
  /** The CA certificate (PEM) and its file. */
  ca: string;
  caFile: string;
}

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
  const issued = await signServerCertificate(ca, `herd API ${hostname()}`, names, 825);
  writePrivateFile(keyFile, issued.key);
  writePrivateFile(certFile, issued.cert);
  return { cert: issued.cert, key: issued.key, ca: ca.cert, caFile: ca.file };
}

/** The names the API certificate serves. */
function serverNames(host: string): ServerNames {
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

function covers(x509: X509Certificate, names: ServerNames): boolean {
  return (
    names.dns.every((n) => x509.checkHost(n, { wildcards: false }) !== undefined) &&
    names.ips.every((ip) => x509.checkIP(ip) !== undefined)
  );
}
