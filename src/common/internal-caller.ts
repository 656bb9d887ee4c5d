/**
 * Service discovery's caller credential (docs/service-discovery.md).
 *
 * An app reaches another service through its node's gateway on an internal
 * listener (gateway/internal-listener.ts). The agent gives each instance one
 * URL per service it may reach, and the URL carries who calls:
 *
 *   http://127.0.0.1:<internal port>/.herd/<caller token>/<app>/<service>/<path…>
 *   caller token = base64url("tenant/app/service") "." base64url(HMAC-SHA256(key, "tenant/app/service"))
 *
 * The key is the gateway's (random, 32 bytes, kept in its data dir with the
 * listener's URL in `internal.json`, mode 0600, read by the node's agent). The
 * gateway checks the MAC, so the caller's tenant and service come from the
 * token, never from what the request names: a caller can only name services
 * of its own tenant, and the gateway's span names the caller.
 */

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";

export interface Caller {
  tenant: string;
  app: string;
  service: string;
}

/** What the gateway publishes for the node's agent: `<gateway dataDir>/internal.json`. */
export interface InternalListenerFile {
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  /** base64url, 32 bytes. */
  key: string;
}

/** The path segment before the caller token. */
export const INTERNAL_PREFIX = "/.herd/";

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

function mac(key: Buffer, subject: string): Buffer {
  return createHmac("sha256", key).update(subject).digest();
}

/** The token an instance of `caller` presents. */
export function callerToken(key: Buffer, caller: Caller): string {
  const subject = `${caller.tenant}/${caller.app}/${caller.service}`;
  return `${Buffer.from(subject).toString("base64url")}.${mac(key, subject).toString("base64url")}`;
}

/** The caller a token names, or null when it is malformed or its MAC is not the key's. */
export function verifyCaller(key: Buffer, token: string): Caller | null {
  const dot = token.indexOf(".");
  if (dot <= 0 || token.length > 512) return null;
  const subject = Buffer.from(token.slice(0, dot), "base64url").toString();
  const given = Buffer.from(token.slice(dot + 1), "base64url");
  const want = mac(key, subject);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
  const [tenant, app, service, ...rest] = subject.split("/");
  if (rest.length > 0 || !tenant || !app || !service) return null;
  return { tenant, app, service };
}

/** The env variable naming a service's internal URL: HERD_SERVICE_<APP>_<SERVICE>_URL (`-` → `_`). */
export function serviceUrlVariable(app: string, service: string): string {
  const part = (s: string) => s.toUpperCase().replaceAll("-", "_");
  return `HERD_SERVICE_${part(app)}_${part(service)}_URL`;
}

/** The env an instance of `caller` gets: one URL per service of its tenant (`app/service` names). */
export function serviceEnv(
  file: InternalListenerFile,
  caller: Caller,
  services: readonly string[],
): Record<string, string> {
  const token = callerToken(Buffer.from(file.key, "base64url"), caller);
  const env: Record<string, string> = {};
  for (const name of services) {
    const [app, service] = name.split("/");
    if (!app || !service || !NAME.test(app) || !NAME.test(service)) continue;
    env[serviceUrlVariable(app, service)] = `${file.url}${INTERNAL_PREFIX}${token}/${app}/${service}`;
  }
  return env;
}

/** Writes the file atomically (temp + rename), readable by root only. */
export function writeInternalFile(path: string, file: InternalListenerFile): void {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(file)}\n`, { mode: 0o600 });
  renameSync(temp, path);
}

/** The file, or null while there is none (no gateway with an internal listener on this node yet). */
export function readInternalFile(path: string): InternalListenerFile | null {
  try {
    const value = JSON.parse(readFileSync(path, "utf8")) as Partial<InternalListenerFile>;
    if (typeof value.url !== "string" || typeof value.key !== "string") return null;
    return { url: value.url, key: value.key };
  } catch {
    return null;
  }
}

/** The key an earlier gateway kept (its file as read, readInternalFile), else a new one: tokens in running instances' env stay valid. */
export function keyFor(kept: InternalListenerFile | null): Buffer {
  const key = kept ? Buffer.from(kept.key, "base64url") : null;
  return key && key.length === 32 ? key : randomBytes(32);
}
