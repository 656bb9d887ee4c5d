/**
 * Trusting the API's certificate authority (api/tls.ts) on the calling side:
 * the CLI, agents and gateways read the CA file named by `--ca` (or found in
 * the data dir) and verify the API's certificate against it.
 *
 *   --ca FILE ─► readCa ─► caDispatcher (fetch({dispatcher})) │ trustCaInProcess (the gateway's processes)
 */

import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Dispatcher } from "undici";
import { HerdError } from "./errors.ts";
import { nodeTls } from "./node-http.ts";

/** The PEM text of a CA certificate file; a HerdError naming `flag` and the file when it is not one. */
export function readCa(file: string, flag = "--ca"): string {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new HerdError("invalid", `${flag} ${file}: ${code === "ENOENT" ? "no such file" : String(err)}`);
  }
  try {
    new X509Certificate(pem);
  } catch {
    throw new HerdError("invalid", `${flag} ${file} is not a PEM certificate`);
  }
  return pem;
}

/**
 * A fetch dispatcher that trusts only `ca` for https URLs (the API is signed
 * by herd's CA, never by a public one). Pass it as `fetch(url, { dispatcher })`.
 */
export function caDispatcher(ca: string): Dispatcher {
  // Loaded here, not at the top: undici takes ~0.3 s to load, and most CLI runs have no CA.
  const { Agent } = createRequire(import.meta.url)("undici") as typeof import("undici");
  return new Agent({ connect: { ca } });
}

/** Options for global fetch that trust `ca`; empty without one. The cast: Node's bundled fetch types name their own undici. */
export const trusting = (dispatcher: Dispatcher | undefined): RequestInit =>
  dispatcher === undefined ? {} : ({ dispatcher } as unknown as RequestInit);

/**
 * Adds the CA to the certificates every TLS client of this process trusts
 * (beside the system's and NODE_EXTRA_CA_CERTS'): for the control plane's own
 * calls to itself (its /metrics scrape, herd up's example deploy) and for the
 * gateway, whose calls to the control plane run in a primary and in worker
 * processes (each worker is told the CA, cluster.ts WorkerSettings.ca).
 */
export function trustCaInProcess(pem: string): void {
  const tls = nodeTls();
  tls.setDefaultCACertificates([...tls.getCACertificates("default"), pem]);
}
