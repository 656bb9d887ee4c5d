/**
 * `herd gateway`: its flags, checked, handed to daemons/gateway.ts. Run by
 * daemons/gateway-main.ts in a gateway's own process (herd up's, or one
 * started from the command line after its re-exec), so that process loads
 * this module and the gateway's, not the CLI's commands and schemas.
 */

import { resolve } from "node:path";
import { readCa, trustCaInProcess } from "../common/api-ca.ts";
import { HerdError } from "../common/errors.ts";
import { ensureDaemonRuntime } from "../daemons/runtime.ts";
import { DEFAULT_DRAIN_MS } from "../gateway/drain.ts";
import type { HoldSettings } from "../gateway/gateway.ts";
import {
  allowFetchOf,
  defaultGatewayWorkers,
  durationFlag,
  FETCH_FLAGS,
  FETCH_HELP,
  HTTPS_FLAGS,
  httpsSettings,
  metricsPortOf,
  parseDaemonFlags,
  portOf,
  sampleOf,
  tokenFrom,
  workerCount,
} from "./daemon-flags.ts";

export const GATEWAY_HELP = `Usage: herd gateway --server URL [--token TOKEN] [--ca FILE] [--port 8080] [--host 0.0.0.0] [--data DIR] [--workers N] [--id ID] [--metrics-port 9180] [--metrics-host 127.0.0.1] [--trace-sample 1]
                    [--https-port 8443] [--tls-cert FILE --tls-key FILE]... [--allow-fetch CIDR[,CIDR]...] [--jwks-dir DIR]
                    [--reuse-port] [--drain-timeout 10s] [--hold-max 100] [--hold-timeout 30s] [--internal-port PORT]

Runs the gateway: routes requests by host and path to running instances.
--workers N runs N worker processes sharing the port behind a primary that
follows the control plane (default: one per two cores); --workers 1 is a single
process. It reports the config version it serves to the control plane
(\`herd gateways\`) as ID (default: HOSTNAME:PORT). The token comes from
--token or HERD_TOKEN: a gateway credential (\`herd tokens create gw1 --kind
gateway\`). --ca FILE (or HERD_CA): the CA that signed an https server's
certificate. Route JWKS files are read only from --jwks-dir (default
DIR/jwks); ${FETCH_HELP}
GET /metrics on
--metrics-host:--metrics-port serves Prometheus metrics summed over all workers
(default 9180, or a free port when 9180 is taken; 0 picks a free port; off
turns it off). The address is printed at start. It records a span of every
request and ships them to the control plane (herd traces, herd map);
--trace-sample 0.1 records a tenth of new traces, 0 none.
With --tls-cert/--tls-key (repeatable: picked by SNI, the first is the
default) it serves HTTPS on --https-port (default 8443) too; --https-port
without certificates uses a self-signed one for localhost made in DIR/tls/.
SIGTERM or SIGINT drains: it stops accepting, answers what is in flight with
Connection: close, and cuts what is left after --drain-timeout. --reuse-port
binds with SO_REUSEPORT, so a newer gateway can bind the same ports while this
one drains (an upgrade without a gap).
Requests for a service scaled to zero (autoscale min: 0) wait while it starts:
at most --hold-max per service and process, for --hold-timeout; past either,
503 with Retry-After (docs/autoscaling.md).
--internal-port PORT serves service discovery's internal listener on
127.0.0.1 (0: the port the last gateway in DIR used, else a free one; with
workers, every worker serves it) and writes its URL and key to
DIR/internal.json for the node's agent (--internal-gateway;
docs/service-discovery.md).`;

/** `herd gateway`'s flags for requests held while a service scaled to zero starts (gateway/hold.ts). */
const HOLD_FLAGS = {
  "hold-max": { type: "string" },
  "hold-timeout": { type: "string" },
} as const;

/** --hold-max N and --hold-timeout 30s (with `prefix` on herd up); unset ones keep the gateway's defaults. */
export function holdOf(max: unknown, timeout: unknown, prefix: string): HoldSettings | undefined {
  if (max === undefined && timeout === undefined) return undefined;
  const hold: HoldSettings = {};
  if (max !== undefined) {
    const n = Number(max);
    if (!Number.isInteger(n) || n < 1 || n > 100_000) {
      throw new HerdError(
        "invalid",
        `--${prefix}hold-max must be a whole number from 1 to 100000, got ${max}`,
      );
    }
    hold.maxPerService = n;
  }
  if (timeout !== undefined) hold.timeoutMs = durationFlag(timeout, `${prefix}hold-timeout`, 1);
  return hold;
}

/** Runs `herd gateway ARGS` (the arguments after the command) until it stops; returns the exit code. */
export async function runGateway(argv: string[]): Promise<number> {
  const v = parseDaemonFlags(GATEWAY_HELP, argv, {
    server: { type: "string" },
    token: { type: "string" },
    port: { type: "string", default: "8080" },
    host: { type: "string", default: "0.0.0.0" },
    data: { type: "string", default: ".herd-gateway" },
    workers: { type: "string", default: String(defaultGatewayWorkers()) },
    id: { type: "string" },
    "metrics-port": { type: "string" },
    "metrics-host": { type: "string", default: "127.0.0.1" },
    "trace-sample": { type: "string" },
    ca: { type: "string" },
    "reuse-port": { type: "boolean" },
    "drain-timeout": { type: "string", default: `${DEFAULT_DRAIN_MS / 1000}s` },
    ...HTTPS_FLAGS,
    ...FETCH_FLAGS,
    "jwks-dir": { type: "string" },
    ...HOLD_FLAGS,
    "internal-port": { type: "string" },
  });
  if (!v) return 0;
  await ensureDaemonRuntime(
    Number(v.workers) > 1 ? "gateway-primary" : "gateway",
    resolve(v.data as string),
    argv,
  );
  // Flag mistakes too are reported to a parent herd process (cluster-child.ts), so they are checked inside.
  return (await import("../daemons/gateway.ts")).runGateway(async () => {
    const server = (v.server as string | undefined) ?? process.env.HERD_SERVER;
    if (!server) throw new HerdError("invalid", "no server: pass --server URL or set HERD_SERVER");
    // Its calls to the control plane run in this process and in its workers: they all trust the CA
    // (the workers are told it: NODE_EXTRA_CA_CERTS stays the machine's, for the fetches that go out).
    const caFile = (v.ca as string | undefined) ?? process.env.HERD_CA;
    const ca = caFile === undefined ? undefined : readCa(caFile);
    if (ca !== undefined) trustCaInProcess(ca);
    const dataDir = resolve(v.data as string);
    return {
      server,
      ...(ca === undefined ? {} : { ca }),
      token: tokenFrom(v),
      port: portOf(v.port, "port"),
      host: v.host as string,
      dataDir,
      workers: workerCount(v.workers),
      id: v.id as string | undefined,
      metricsPort: metricsPortOf(v["metrics-port"], "metrics-port"),
      // The default port may be taken (another gateway here): then any free one, printed at start.
      metricsPortOrFree: v["metrics-port"] === undefined,
      metricsHost: v["metrics-host"] as string,
      https: await httpsSettings(v, dataDir, false),
      traceSample: sampleOf(v["trace-sample"], "trace-sample"),
      reusePort: Boolean(v["reuse-port"]),
      drainMs: durationFlag(v["drain-timeout"], "drain-timeout", 0),
      allowFetch: allowFetchOf(v),
      jwksDir: v["jwks-dir"] === undefined ? undefined : resolve(v["jwks-dir"] as string),
      hold: holdOf(v["hold-max"], v["hold-timeout"], ""),
      ...(v["internal-port"] === undefined
        ? {}
        : { internalPort: portOf(v["internal-port"], "internal-port") }),
    };
  });
}
