/**
 * Flags and their checks shared by the daemon commands (`herd up`, `herd
 * server`, `herd agent`, `herd gateway`). A module of its own, light on
 * imports: `herd gateway` runs from gateway-command.ts without loading the
 * rest of the CLI (platform.ts, the API's schemas), which holds about 18 MB
 * in a gateway process.
 */

import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { HerdError } from "../common/errors.ts";
import { DEFAULT_METRICS_PORT } from "../common/metrics-server.ts";
import { UrlGuard } from "../common/url-guard.ts";
import type { HttpsSettings } from "../gateway/gateway.ts";
import { parseDuration } from "../observe/promql/parser.ts";

/** The flags of one daemon command, parsed strictly; undefined after printing `help` for --help. */
export function parseDaemonFlags(
  help: string,
  argv: string[],
  options: Record<string, { type: "string" | "boolean"; multiple?: boolean; default?: string }>,
) {
  const { values } = parseArgs({
    args: argv,
    options: { ...options, help: { type: "boolean", short: "h" } },
    allowPositionals: false,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${help}\n`);
    return undefined;
  }
  return values as Record<string, string | boolean | string[] | undefined>;
}

export const FETCH_HELP = `--allow-fetch 127.0.0.0/8,10.0.0.0/8 (repeatable) lets alert webhooks,
registered scrape targets, trace forwarding and route JWKS URLs reach these
internal addresses; by default herd fetches no loopback, private, link-local
or other internal address (docs/security-hardening.md).`;

export const portOf = (value: unknown, name: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new HerdError("invalid", `--${name} must be a port number (0-65535), got ${value}`);
  return n;
};

/** A metrics port flag: a port number, or `off` for no metrics listener (undefined); unset: the default. */
/** A share from 0 to 1 (--trace-sample); undefined when the flag is absent. */
export const sampleOf = (value: unknown, name: string): number | undefined => {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n >= 0 && n <= 1))
    throw new HerdError("invalid", `--${name} must be a share from 0 to 1, got ${value}`);
  return n;
};

export const metricsPortOf = (
  value: unknown,
  name: string,
  fallback = DEFAULT_METRICS_PORT,
): number | undefined => (value === undefined ? fallback : value === "off" ? undefined : portOf(value, name));

export function tokenFrom(v: Record<string, unknown>): string {
  const token = (v.token as string | undefined) ?? process.env.HERD_TOKEN;
  if (!token)
    throw new HerdError(
      "invalid",
      "no token: pass --token or set HERD_TOKEN (the admin token is in the server's data dir, file admin-token)",
    );
  return token;
}

export const durationFlag = (value: unknown, name: string, minMs: number): number => {
  const ms = parseDuration(String(value));
  if (ms === undefined || ms < minMs) {
    throw new HerdError(
      "invalid",
      `--${name} must be a duration like 15s, 24h or 30d (at least ${minMs / 1000}s), got ${value}`,
    );
  }
  return ms;
};

/** `--allow-fetch`: internal ranges herd may fetch from (herd up, server, gateway). */
export const FETCH_FLAGS = { "allow-fetch": { type: "string", multiple: true } } as const;

export const allowFetchOf = (v: Record<string, unknown>): string[] =>
  UrlGuard.parseAllowList((v["allow-fetch"] as string[] | undefined) ?? []);

/** The flags both `herd up` and `herd gateway` take for HTTPS. */
export const HTTPS_FLAGS = {
  "https-port": { type: "string" },
  "tls-cert": { type: "string", multiple: true },
  "tls-key": { type: "string", multiple: true },
} as const;

/** The default HTTPS port of the gateway. */
export const DEFAULT_HTTPS_PORT = 8443;

/**
 * HTTPS from the flags: the --tls-cert/--tls-key pairs in order, or the
 * development certificate in `<dataDir>/tls` when none is given (`herd up`:
 * localhost signed by herd's CA; `herd gateway`: self-signed). `byDefault`:
 * serve HTTPS without any flag (`herd up`; `herd gateway` needs one).
 */
export async function httpsSettings(
  v: Record<string, unknown>,
  dataDir: string,
  byDefault: boolean,
  defaultPort = DEFAULT_HTTPS_PORT,
): Promise<(HttpsSettings & { development: boolean; caFile?: string }) | undefined> {
  const certs = (v["tls-cert"] as string[] | undefined) ?? [];
  const keys = (v["tls-key"] as string[] | undefined) ?? [];
  if (v["no-https"]) {
    if (certs.length > 0 || v["https-port"] !== undefined)
      throw new HerdError("invalid", "--no-https cannot go with --https-port, --tls-cert or --tls-key");
    return undefined;
  }
  if (certs.length !== keys.length)
    throw new HerdError(
      "invalid",
      `each --tls-cert needs its --tls-key, in the same order: got ${certs.length} --tls-cert and ${keys.length} --tls-key`,
    );
  if (!byDefault && certs.length === 0 && v["https-port"] === undefined) return undefined;
  const port = v["https-port"] === undefined ? defaultPort : portOf(v["https-port"], "https-port");
  if (certs.length > 0) {
    return {
      port,
      certificates: certs.map((cert, i) => ({ cert: resolve(cert), key: resolve(keys[i]) })),
      development: false,
    };
  }
  if (!byDefault)
    return {
      port,
      certificates: [await (await import("../gateway/tls.ts")).ensureDevCertificate(join(dataDir, "tls"))],
      development: true,
    };
  // herd up: the control plane's CA (the same data dir) signs the default and every routed host.
  const { ca, ...files } = await (await import("../api/local-ca.ts")).ensureLocalhostCertificate(
    join(dataDir, "tls"),
  );
  return { port, certificates: [files], development: true, caFile: ca };
}

export function workerCount(value: unknown): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1024)
    throw new HerdError("invalid", `--workers must be a whole number from 1 to 1024, got ${value}`);
  return n;
}

/**
 * The gateway's worker processes by default (`herd gateway --workers`, `herd
 * up --gateway-workers`): one per two cores, so one process on a 2-core
 * machine. A proxied request wakes the gateway twice and the upstream once;
 * with the load, the upstream and the gateway sharing two cores, a second
 * worker added CPU per request and no throughput (docs/benchmarks.md).
 */
export function defaultGatewayWorkers(): number {
  return Math.max(1, Math.floor(availableParallelism() / 2));
}
