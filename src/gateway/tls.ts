/**
 * HTTPS termination for the gateway: certificate files loaded into TLS
 * contexts, one picked per connection by the name the client asks for (SNI),
 * and a self-signed development certificate for `localhost` that `herd up`
 * makes once when no certificate is given.
 *
 * Names come from each certificate's subjectAltNames (its subject's CN when
 * it has none): an exact name first, then wildcards (`*.example.com` serves
 * `a.example.com`, one label deep, as TLS clients check it). A name no file
 * covers that a route serves gets its own certificate from the control plane
 * (host-certificates.ts: herd's CA or ACME); a client that sends no name, or
 * a name nothing covers, gets the first certificate.
 */

import { X509Certificate } from "node:crypto";
import {
  chmodSync,
  mkdirSync,
  readFileSync,
  renameSync,
  type StatWatcher,
  unwatchFile,
  watchFile,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import tls, { type SecureContext } from "node:tls";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import { signServerCertificate } from "../common/server-certificate.ts";
import type { OnDemandCertificates } from "./host-certificates.ts";

/** One certificate chain file and its private key file (PEM). */
export interface CertificateFiles {
  cert: string;
  key: string;
}

/** One loaded certificate: what the server needs for it and the names it serves. */
interface LoadedCertificate {
  cert: Buffer;
  key: Buffer;
  context: SecureContext;
  names: string[];
}

/**
 * The certificates a gateway serves, loaded once; `pick` runs per TLS
 * handshake (a map lookup or two), never per request.
 */
export class CertificateStore {
  /** The first certificate: for clients without SNI and names nothing else covers. */
  readonly default: { cert: Buffer; key: Buffer };
  /** Every name served, for logs (`*.x` for wildcards). */
  readonly names: readonly string[];
  readonly #defaultContext: SecureContext;
  readonly #exact = new Map<string, SecureContext>();
  /** Keyed by the suffix after `*.`. */
  readonly #wildcard = new Map<string, SecureContext>();
  /** Routed hosts' own certificates, for names the files do not cover. */
  readonly onDemand: OnDemandCertificates | undefined;

  constructor(certificates: LoadedCertificate[], onDemand?: OnDemandCertificates) {
    this.onDemand = onDemand;
    const first = certificates[0];
    this.default = { cert: first.cert, key: first.key };
    this.#defaultContext = first.context;
    for (const c of certificates) {
      for (const name of c.names) {
        // The first certificate to name a host keeps it (like the order of the flags).
        if (name.startsWith("*.")) {
          if (!this.#wildcard.has(name.slice(2))) this.#wildcard.set(name.slice(2), c.context);
        } else if (!this.#exact.has(name)) this.#exact.set(name, c.context);
      }
    }
    this.names = certificates.flatMap((c) => c.names);
  }

  /**
   * The server's SNICallback: the files' certificate for the name, else the
   * routed host's own (fetched once), else the default.
   */
  select(servername: string, done: (err: Error | null, context?: SecureContext) => void): void {
    const name = servername.toLowerCase().replace(/\.$/, "");
    const picked = this.#fromFiles(name);
    const onDemand = this.onDemand;
    if (picked !== undefined || onDemand === undefined || !onDemand.serves(name)) {
      done(null, picked ?? this.#defaultContext);
      return;
    }
    onDemand.context(name).then(
      (context) => done(null, context ?? this.#defaultContext),
      () => done(null, this.#defaultContext),
    );
  }

  /** The context for a client's SNI name among the files' certificates (lowercased here; the trailing dot ignored). */
  pick(servername: string): SecureContext {
    return this.#fromFiles(servername.toLowerCase().replace(/\.$/, "")) ?? this.#defaultContext;
  }

  #fromFiles(name: string): SecureContext | undefined {
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    if (dot !== -1) {
      const wild = this.#wildcard.get(name.slice(dot + 1));
      if (wild !== undefined) return wild;
    }
    return undefined;
  }
}

/**
 * Reads certificate and key files; a missing, unreadable or mismatched file
 * is a HerdError that names the flag and the file.
 */
export function loadCertificates(
  files: CertificateFiles[],
  onDemand?: OnDemandCertificates,
): CertificateStore {
  if (files.length === 0) throw new HerdError("invalid", "HTTPS needs at least one --tls-cert and --tls-key");
  return new CertificateStore(files.map(loadCertificate), onDemand);
}

function loadCertificate(files: CertificateFiles): LoadedCertificate {
  const cert = readPem(files.cert, "--tls-cert");
  const key = readPem(files.key, "--tls-key");
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new HerdError(
      "invalid",
      `--tls-cert ${files.cert} is not a PEM certificate (${(err as Error).message})`,
    );
  }
  let context: SecureContext;
  try {
    context = tls.createSecureContext({ cert, key });
  } catch (err) {
    const message = (err as Error).message;
    throw new HerdError(
      "invalid",
      /mismatch/i.test(message)
        ? `--tls-key ${files.key} is not the key of --tls-cert ${files.cert}`
        : `--tls-cert ${files.cert} / --tls-key ${files.key}: ${message}`,
    );
  }
  return { cert, key, context, names: certificateNames(x509) };
}

function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(err);
    throw new HerdError("invalid", `${flag} ${file}: ${why}`);
  }
}

/** The DNS names a certificate serves: its subjectAltNames, else its subject's CN. */
function certificateNames(x509: X509Certificate): string[] {
  const names = (x509.subjectAltName ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("DNS:"))
    .map((s) => s.slice(4).toLowerCase());
  if (names.length > 0) return names;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/**
 * Reloads the certificates when one of their files changes (polled every
 * `intervalMs`, so it also sees a file replaced by a rename, as certbot
 * does). A new set that does not load is logged and the old one kept.
 * Returns a function that stops watching.
 */
export function watchCertificates(
  files: CertificateFiles[],
  logger: Logger,
  onReload: (store: CertificateStore) => void,
  intervalMs = 2_000,
  onDemand?: OnDemandCertificates,
): () => void {
  const paths = [...new Set(files.flatMap((f) => [f.cert, f.key]))];
  let pending: NodeJS.Timeout | undefined;
  const reload = () => {
    // A cert and its key are usually rewritten together: wait for both.
    clearTimeout(pending);
    pending = setTimeout(() => {
      try {
        onReload(loadCertificates(files, onDemand));
        logger.info("TLS certificates reloaded", { files: paths });
      } catch (err) {
        logger.warn("TLS certificates changed but do not load; keeping the old ones", { error: err });
      }
    }, 200);
    pending.unref();
  };
  const watchers: StatWatcher[] = [];
  for (const path of paths) {
    watchers.push(watchFile(path, { interval: intervalMs, persistent: false }, reload));
  }
  return () => {
    clearTimeout(pending);
    for (const path of paths) unwatchFile(path, reload);
  };
}

/**
 * The names the development certificate serves: only the loopback names.
 * Every routed host gets its own certificate from the control plane
 * (host-certificates.ts), which a wildcard here would shadow.
 */
export const DEV_CERT_NAMES = ["localhost"];
const DEV_CERT_IPS = ["127.0.0.1", "::1"];

/**
 * The development certificate of `herd gateway --https-port` without
 * `--tls-cert`, in `dir` (`localhost-cert.pem`, and `localhost-key.pem`
 * readable by its owner only): made once, self-signed, for localhost,
 * 127.0.0.1 and ::1; made again when it is about to expire. (`herd up` uses
 * one signed by herd's CA instead: api/local-ca.ts.)
 */
export async function ensureDevCertificate(dir: string): Promise<CertificateFiles> {
  const files = { cert: join(dir, "localhost-cert.pem"), key: join(dir, "localhost-key.pem") };
  try {
    const x509 = new X509Certificate(readFileSync(files.cert));
    readFileSync(files.key);
    if (x509.validToDate.getTime() > Date.now() + 7 * 86_400_000) return files;
  } catch {
    // Missing or damaged: make a new one.
  }
  // 825 days: the longest validity Apple's clients accept for a server certificate.
  const issued = await signServerCertificate(
    undefined,
    "localhost",
    { dns: DEV_CERT_NAMES, ips: DEV_CERT_IPS },
    825,
  );
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Written beside and renamed, so a reader never sees half a file; the key is private from the start.
  writeFileSync(`${files.key}.tmp`, issued.key, { mode: 0o600 });
  chmodSync(`${files.key}.tmp`, 0o600);
  renameSync(`${files.key}.tmp`, files.key);
  writeFileSync(`${files.cert}.tmp`, issued.cert, { mode: 0o644 });
  renameSync(`${files.cert}.tmp`, files.cert);
  return files;
}
