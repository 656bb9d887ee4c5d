/**
 * The flags of the platform roles: `herd up` (everything on this machine),
 * `herd server`, `herd agent`, `herd gateway` and `herd down`. Each is parsed
 * and checked here, then run by its daemon (src/daemons/), in the foreground
 * until SIGINT or SIGTERM.
 */

import { existsSync } from "node:fs";
// The daemons (and what only one role needs) are imported when their command runs: a
// `herd gateway` process never loads the control plane, the agent or the API.
import { availableParallelism, hostname, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { parsePortRange } from "../agent/ports.ts";
import type { AcmeSettings } from "../api/acme.ts";
import { readCa } from "../common/api-ca.ts";
import { HerdError } from "../common/errors.ts";
import { DEFAULT_AGENT_METRICS_PORT } from "../common/metrics-server.ts";
import { capSqliteCaches } from "../common/sqlite-cache.ts";
import { ensureDaemonRuntime } from "../daemons/runtime.ts";
import { parseBytes } from "../model/manifest.ts";
import type { Taint } from "../model/objects.ts";
import { ETCD_TLS_OPTIONS, etcdTlsOf } from "../store/etcd-flags.ts";
import type { EtcdTlsFiles } from "../store/open.ts";
import {
  allowFetchOf,
  DEFAULT_HTTPS_PORT,
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
  workerCount,
} from "./daemon-flags.ts";
import { GATEWAY_HELP, holdOf } from "./gateway-command.ts";

/** `herd gateway`: in its own module, so a gateway process loads none of the rest of the CLI. */
export { runGateway } from "./gateway-command.ts";

import { findDataDir, saveLocalContext, userConfigPath } from "./config.ts";
import { MACHINE_FLAGS, MACHINE_HELP, machinesOf } from "./machine-flags.ts";
import {
  headerFlags,
  LOG_SERVER_FLAGS,
  logsOptionsFromFlags,
  TRACE_SERVER_FLAGS,
  tracesOptionsFromFlags,
} from "./store-flags.ts";

export { DEFAULT_HTTPS_PORT };

const TRACES_HELP = `Spans: [--traces-retention 24h] [--traces-max-size 512Mi] [--traces-forward URL
[--traces-forward-header NAME=VALUE]...] keep spans this long and at most this much
(oldest dropped first), and also send them to an OTLP/HTTP endpoint.
OTLP: [--grpc-port 4317] also take OTLP/gRPC (traces, metrics, logs) on this port;
OTLP/HTTP is always at /api/v1/otlp (docs/traces.md).
Logs: [--logs-retention 7d] [--logs-max-size 256Mi] keep instance lines and
events this long and at most this much (oldest dropped first; the disk's last
256 MiB are never used).
Queries: [--query-timeout 30s] [--query-concurrency N] [--query-max-samples 10000000]
PromQL through the API runs in N worker threads (default 2 to 4 by CPU count), at
most --query-timeout each, loading at most --query-max-samples (docs/telemetry-tenancy.md).`;

const HELP = {
  up: `Usage: herd up [--data DIR] [--port 7070] [--gateway-port 8080] [--gateway-workers N] [--small] [--gateway-metrics-port 9180] [--gateway-trace-sample 1] [--host 127.0.0.1]
               [--public] [--https-port 8443] [--tls-cert FILE --tls-key FILE]... [--no-https]
               [--acme-directory URL --acme-domain DOMAIN... [--acme-email EMAIL] [--acme-ca FILE]]
               [--no-example] [--keep-apps] [--no-login] [--tls] [--max-upload-mb 200] [--keep-releases 50] [--node-lost-after 9] [--unit-cpu 0.1] [--unit-memory 128Mi] [--cpu-overcommit 2]
       [--cpu N] [--memory 4Gi] [--metrics-max-size 1Gi] [--metrics-retention 24h] [--metrics-downsampled-retention 30d] [--scrape-interval 15s] [--metrics-remote-write URL] [--alert-interval 15s]
       [--allow-fetch CIDR[,CIDR]...] [--jwks-dir DIR] [--machine-provider exec:CMD|URL ...]
       [--gateway-hold-max 100] [--gateway-hold-timeout 30s] [--docker | --docker-socket PATH]

Runs the whole platform on this machine in the foreground: the control plane
(API), one agent and the gateway (its own processes: one, or a primary and
--gateway-workers workers; default one worker per two cores, so one gateway
process on a 2-core machine). --small keeps herd to two processes on any
machine (one gateway process, one query thread at most), caps each SQLite
database's page cache at 512 KiB and runs the control plane on V8's
interpreter only: about 165 MB idle, docs/benchmarks.md.
Data lives in DIR (default ./.herd). On the first start it deploys
examples/hello. It signs the CLI in to this server:
the context "local" in ~/.config/herd/config.json, made current unless you
chose another one (herd context; --no-login leaves that file alone).
Ctrl-C stops the gateway, the agent, the apps' instances and the control
plane (the next herd up starts the apps again); --keep-apps leaves the apps
and the gateway running (the next herd up takes them over). The gateway
outlives a crash of herd up and keeps serving; the next herd up adopts it,
or, on newer code or other flags, starts the new one on the same ports and
lets the old one drain (no request dropped). herd down stops a platform
whose herd up is gone (docs/availability.md).
--max-upload-mb limits a deploy's source upload; --keep-releases is how many
releases each app keeps (older ones nothing uses are deleted after a deploy,
and their slugs with them; 0 keeps every one); --node-lost-after is how many
seconds without a heartbeat make a node lost (its cattle move elsewhere).
Each instance requests --unit-cpu cores and --unit-memory by default; CPU
requests may add up to --cpu-overcommit times this machine's cores (CPU is
shared by weight under contention), memory is never overcommitted (docs/resources.md).
--cpu and --memory give herd that budget instead of the whole machine's.
The gateway's Prometheus metrics are at http://HOST:9180/metrics (printed at
start; a free port when 9180 is taken; --gateway-metrics-port, off turns them off).
The gateway also serves HTTPS on --https-port: with the --tls-cert/--tls-key
pairs given (picked by SNI; the first is the default), and for every other
routed host with a certificate signed by herd's CA (made once in DIR/tls/:
trust DIR/tls/ca-cert.pem, e.g. curl --cacert) or, for hosts under an
--acme-domain, one from the ACME server at --acme-directory (HTTP-01
through the gateway's HTTP port: it must be port 80 to the world).
--no-https serves HTTP only. --public: the gateway listens on every
interface, on ports 80 and 443 when run as root (else 8080 and 8443), unless
--gateway-port/--https-port say otherwise; the API stays on --host
(docs/https.md).
Metrics live in DIR/metrics: raw samples for --metrics-retention, then 1-minute
aggregates for --metrics-downsampled-retention, never more than
--metrics-max-size (the oldest go first); targets are scraped every --scrape-interval.
--metrics-remote-write URL sends every stored sample on to a Prometheus remote
write receiver too (--metrics-remote-write-header NAME=VALUE adds headers; the
URL passes --allow-fetch like any other; docs/metrics.md).
Alert rules are evaluated every --alert-interval (herd alerts; docs/alerts.md).
The agent and the gateway use credentials of their own (DIR/credentials), not
the admin token. --tls serves the API over HTTPS with a certificate signed by
a CA made in DIR/tls (ca-cert.pem: give it to agents and gateways with --ca);
off by default (docs/nodes-and-credentials.md).
Route JWKS files are read only from --jwks-dir (default DIR/jwks).
--docker runs containers too (runtime: docker, image:) on herd's own Docker
engine in DIR/dockerd, as root (Debian's docker.io and busybox-static are
installed when missing); it stops with the apps (Ctrl-C, herd down).
--docker-socket PATH uses an engine that runs already, e.g. /run/docker.sock
(docs/containers.md).
${FETCH_HELP}
${MACHINE_HELP}
${TRACES_HELP}`,
  server: `Usage: herd server [--data DIR] [--store sqlite|etcd://HOST:PORT,...] [--etcd-ca FILE [--etcd-cert FILE --etcd-key FILE]] [--lease-ttl 5] [--artifacts DIR] [--port 7070] [--host 127.0.0.1] [--tls] [--gateway-url URL] [--max-upload-mb 200] [--keep-releases 50] [--node-lost-after 9] [--unit-cpu 0.1] [--unit-memory 128Mi]
       [--acme-directory URL --acme-domain DOMAIN... [--acme-email EMAIL] [--acme-ca FILE]]
       [--metrics-max-size 1Gi] [--metrics-retention 24h] [--metrics-downsampled-retention 30d] [--scrape-interval 15s] [--metrics-remote-write URL] [--alert-interval 15s]
       [--allow-fetch CIDR[,CIDR]...] [--machine-provider exec:CMD|URL ...]

Runs the control plane: the API, the store and the controllers. Agents join it
with \`herd agent --server URL --join-token T\` (T from \`herd nodes join-token\`);
gateways follow it with \`herd gateway --server URL --token T\` (T from
\`herd tokens create gw1 --kind gateway\`). --tls serves HTTPS with a certificate
signed by DIR/tls/ca-cert.pem (made once; pass it to agents and gateways as --ca).
--store keeps the objects in DIR/state.db (sqlite, the default) or in an etcd
cluster (etcd://host:2379,host:2379[/root]; docs/etcd.md). Several servers may
share one etcd: all serve the API, one leader (elected with an etcd lease of
--lease-ttl seconds) runs the controllers; give them one shared --artifacts
directory (default DIR/artifacts) for slugs (docs/high-availability.md).
--etcd-ca speaks TLS to etcd, verifying its members against that CA; with
--etcd-cert and --etcd-key the server also shows etcd that client certificate.
${FETCH_HELP}
${MACHINE_HELP}
${TRACES_HELP}`,
  agent: `Usage: herd agent --server URL [--join-token TOKEN | --token TOKEN] [--ca FILE] [--name NAME] [--data DIR] [--address ADDR] [--label k=v]...
       [--taint key[=value]]... [--cpu N] [--memory 8Gi] [--reserve-cpu 0.1] [--reserve-memory 256Mi] [--cpu-overcommit 2]
       [--eviction-memory 100Mi] [--ports 20000-29999] [--metrics-port 9181] [--metrics-host 127.0.0.1] [--internal-gateway FILE] [--docker-socket PATH]
       [--dockerd DIR] [--registry HOST:PORT] [--serve-registry HOST:PORT]

Runs a node agent that joins the control plane at URL and runs instances here.
The first start trades --join-token (or HERD_JOIN_TOKEN; from \`herd nodes
join-token\`) for this node's credential and keeps it in DIR/credential.json
(mode 0600); later starts use that. --token is used as given instead
(HERD_TOKEN too, when there is neither a credential nor a join token).
--ca FILE (or HERD_CA): the CA that signed an https server's certificate (the
control plane's DIR/tls/ca-cert.pem). Labels are matched by services'
placement.nodeSelector; a taint keeps off instances that do not tolerate it.
--cpu and --memory override the machine's capacity; the reserve is kept back
for the system (allocatable = capacity - reserve). CPU requests may add up to
--cpu-overcommit times the allocatable CPU (CPU is shared by weight; memory is
never overcommitted; docs/resources.md). When the machine's available memory
falls below --eviction-memory, the agent evicts a burstable instance over its
memory request, lowest criticality first (docs/resources.md). --ports is the range instance
ports come from; agents sharing one machine each need their own.
--metrics-host:--metrics-port serves the agent's own Prometheus metrics
(heartbeats, instance starts and exits, log shipping, process CPU and memory)
at /metrics; a free port when 9181 is taken; off turns it off. The control
plane scrapes it (job herd-agent) and lists it in its service discovery.
--internal-gateway FILE: the internal.json of this node's gateway (herd gateway
--internal-port); instances then get HERD_SERVICE_<APP>_<SERVICE>_URL for
their tenant's services (docs/service-discovery.md).
--docker-socket PATH: a Docker engine's API socket (e.g. /run/docker.sock): the
node also runs services with image: or runtime: docker (docs/containers.md).
--dockerd DIR: the same with the agent's own engine under DIR, started unless
one answers there (it outlives the agent, as its containers do).
--registry HOST:PORT: builds are pushed to this local registry and pulled from
it by digest; --serve-registry HOST:PORT runs it here (data in DIR/registry).`,
  gateway: GATEWAY_HELP,
  down: `Usage: herd down [--data DIR]

Stops the platform whose data lives in DIR (default: HERD_DATA, else the
nearest .herd in this directory or a parent, as other commands find it): its herd up if
that still runs, the gateway, and the apps, also when herd up is gone (killed,
crashed, or stopped with --keep-apps). The apps start again with the next herd up.`,
};

type Role = keyof typeof HELP;

function flags(
  role: Role,
  argv: string[],
  options: Record<string, { type: "string" | "boolean"; multiple?: boolean; default?: string }>,
) {
  return parseDaemonFlags(HELP[role], argv, options);
}

const megabytes = (value: unknown): number => {
  const n = Number(value);
  if (!(n > 0)) throw new HerdError("invalid", `--max-upload-mb must be a positive number, got ${value}`);
  return Math.round(n * 1024 * 1024);
};

/** --keep-releases: a whole number from 0 (keep every release) up. */
const keepReleasesOf = (value: unknown): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 1_000_000)
    throw new HerdError(
      "invalid",
      `--keep-releases must be a whole number from 0 (keep every release), got ${value}`,
    );
  return n;
};

/** A node is lost after `seconds` without a heartbeat, and not ready after 40% of that. */
const nodeTimeouts = (value: unknown): { nodeLostMs: number; nodeNotReadyMs: number } => {
  const seconds = Number(value);
  if (!(seconds >= 2 && seconds <= 3600)) {
    throw new HerdError(
      "invalid",
      `--node-lost-after must be a number of seconds from 2 to 3600, got ${value}`,
    );
  }
  return { nodeLostMs: seconds * 1000, nodeNotReadyMs: seconds * 400 };
};

export async function runUp(argv: string[]): Promise<number> {
  const v = flags("up", argv, {
    data: { type: "string", default: ".herd" },
    port: { type: "string", default: "7070" },
    "gateway-port": { type: "string" },
    public: { type: "boolean" },
    "gateway-workers": { type: "string" },
    small: { type: "boolean" },
    "gateway-metrics-port": { type: "string" },
    "gateway-trace-sample": { type: "string" },
    "gateway-hold-max": { type: "string" },
    "gateway-hold-timeout": { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    "no-example": { type: "boolean" },
    "keep-apps": { type: "boolean" },
    "no-login": { type: "boolean" },
    "max-upload-mb": { type: "string", default: "200" },
    "keep-releases": { type: "string", default: "50" },
    "node-lost-after": { type: "string", default: "9" },
    "unit-cpu": { type: "string", default: "0.1" },
    "unit-memory": { type: "string", default: "128Mi" },
    "cpu-overcommit": { type: "string" },
    cpu: { type: "string" },
    memory: { type: "string" },
    ...HTTPS_FLAGS,
    "no-https": { type: "boolean" },
    tls: { type: "boolean" },
    ...ACME_FLAGS,
    ...TRACE_SERVER_FLAGS,
    "metrics-max-size": { type: "string", default: "1Gi" },
    "metrics-retention": { type: "string", default: "24h" },
    "metrics-downsampled-retention": { type: "string", default: "30d" },
    "scrape-interval": { type: "string", default: "15s" },
    "metrics-remote-write": { type: "string" },
    "metrics-remote-write-header": { type: "string", multiple: true },
    "alert-interval": { type: "string", default: "15s" },
    ...QUERY_FLAGS,
    ...LOG_SERVER_FLAGS,
    ...FETCH_FLAGS,
    ...MACHINE_FLAGS,
    "jwks-dir": { type: "string" },
    docker: { type: "boolean" },
    "docker-socket": { type: "string" },
  });
  if (!v) return 0;
  const dataDir = resolve(v.data as string);
  const docker = await upDocker(v.docker === true, v["docker-socket"] as string | undefined, dataDir);
  await ensureDaemonRuntime(v.small ? "up-small" : "up", dataDir);
  const allowFetch = allowFetchOf(v);
  // --public as root: the standard ports, which only root may bind.
  const standardPorts = v.public === true && process.getuid?.() === 0;
  const gatewayPort = portOf(v["gateway-port"] ?? (standardPorts ? "80" : "8080"), "gateway-port");
  // --small: at most one PromQL worker thread (each holds its own V8 heap while it lives),
  // and a small page cache for each SQLite database (common/sqlite-cache.ts).
  if (v.small && v["query-concurrency"] === undefined) v["query-concurrency"] = "1";
  if (v.small) capSqliteCaches();
  return (await import("../daemons/up.ts")).runUp({
    dataDir,
    server: serverOptionsOf(v, `http://127.0.0.1:${gatewayPort}`, allowFetch),
    gateway: {
      port: gatewayPort,
      host: v.public === true ? "0.0.0.0" : (v.host as string),
      workers: upGatewayWorkers(v["gateway-workers"], Boolean(v.small)),
      // Unset: the gateway's own default (9180, or a free port when that is taken).
      metricsPort:
        v["gateway-metrics-port"] === undefined
          ? undefined
          : (metricsPortOf(v["gateway-metrics-port"], "gateway-metrics-port") ?? "off"),
      // Checked (and the development certificate made) before anything starts.
      https: await httpsSettings(v, dataDir, true, standardPorts ? 443 : DEFAULT_HTTPS_PORT),
      traceSample: sampleOf(v["gateway-trace-sample"], "gateway-trace-sample"),
      allowFetch,
      jwksDir: resolve((v["jwks-dir"] as string | undefined) ?? join(dataDir, "jwks")),
      hold: holdOf(v["gateway-hold-max"], v["gateway-hold-timeout"], "gateway-"),
      ...(v.small ? { small: true } : {}),
    },
    example: !v["no-example"],
    keepApps: Boolean(v["keep-apps"]),
    ...cpuOvercommitOf(v["cpu-overcommit"]),
    ...(v.cpu !== undefined || v.memory !== undefined
      ? {
          capacity: {
            ...(v.cpu !== undefined ? { cpu: cpuFlag(v.cpu, "cpu") } : {}),
            ...(v.memory !== undefined ? { memory: memoryFlag(v.memory, "memory") } : {}),
          },
        }
      : {}),
    ...(docker === undefined ? {} : { docker }),
    ...(v["no-login"] ? {} : { signIn: (server) => signInCli(dataDir, server) }),
  });
}

/**
 * `herd up --docker`: herd's own engine under DIR/dockerd, whose binaries
 * (Debian's docker.io and busybox-static) are installed when missing, as
 * root; it needs root to run. `--docker-socket PATH`: an engine that runs.
 */
async function upDocker(
  own: boolean,
  socket: string | undefined,
  dataDir: string,
): Promise<{ dockerd: string } | { socket: string } | undefined> {
  if (own && socket !== undefined)
    throw new HerdError(
      "invalid",
      "--docker and --docker-socket do not go together: one engine or the other",
    );
  if (socket !== undefined) return { socket: resolve(socket) };
  if (!own) return undefined;
  if (process.getuid?.() !== 0)
    throw new HerdError(
      "invalid",
      "--docker starts herd's own Docker engine, which needs root; give an engine you may use with --docker-socket PATH",
    );
  const { ensureDebianPackages } = await import("../common/debian-packages.ts");
  await ensureDebianPackages({ dockerd: "docker.io", busybox: "busybox-static" });
  return { dockerd: join(dataDir, "dockerd") };
}

/**
 * Signs the CLI in to herd up's own server (the context `local`, config.ts),
 * so `herd ps` works from any directory; the line herd up prints about it.
 * A failure to write the config is reported there, and does not stop herd up.
 */
async function signInCli(
  dataDir: string,
  server: { url: string; token: string; ca?: string },
): Promise<string> {
  const file = userConfigPath({ env: process.env });
  try {
    const r = await saveLocalContext(file, {
      server: server.url,
      token: server.token,
      ca: server.ca,
      dataDir,
    });
    if (r.name === undefined) return `not signed in: ${r.skipped} (--no-login leaves the CLI's config alone)`;
    if (r.current) return `signed in as admin (context ${r.name} in ${file})`;
    return `context ${r.name} saved in ${file}; the current one is ${r.other}: herd context use ${r.name}`;
  } catch (err) {
    return `not signed in: ${(err as Error).message}`;
  }
}

/**
 * herd up's gateway workers: `--gateway-workers`, else one per two cores, as
 * the control plane and the apps share the machine (on 2 cores one gateway
 * process: a second worker and a primary in front of them cost ~190 MB and
 * served no more requests, docs/benchmarks.md); `--small`: one process.
 */
function upGatewayWorkers(flag: unknown, small: boolean): number {
  if (flag === undefined) return small ? 1 : defaultGatewayWorkers();
  const workers = workerCount(flag);
  if (small && workers !== 1) {
    throw new HerdError(
      "invalid",
      `--small runs one gateway process: drop --gateway-workers ${flag} or --small`,
    );
  }
  return workers;
}

export async function runServer(argv: string[]): Promise<number> {
  const v = flags("server", argv, {
    data: { type: "string", default: ".herd" },
    store: { type: "string" },
    ...ETCD_TLS_OPTIONS,
    "lease-ttl": { type: "string", default: "5" },
    artifacts: { type: "string" },
    port: { type: "string", default: "7070" },
    host: { type: "string", default: "127.0.0.1" },
    "gateway-url": { type: "string", default: "http://127.0.0.1:8080" },
    "max-upload-mb": { type: "string", default: "200" },
    "keep-releases": { type: "string", default: "50" },
    "node-lost-after": { type: "string", default: "9" },
    "unit-cpu": { type: "string", default: "0.1" },
    "unit-memory": { type: "string", default: "128Mi" },
    ...TRACE_SERVER_FLAGS,
    "metrics-max-size": { type: "string", default: "1Gi" },
    "metrics-retention": { type: "string", default: "24h" },
    "metrics-downsampled-retention": { type: "string", default: "30d" },
    "scrape-interval": { type: "string", default: "15s" },
    "metrics-remote-write": { type: "string" },
    "metrics-remote-write-header": { type: "string", multiple: true },
    "alert-interval": { type: "string", default: "15s" },
    ...QUERY_FLAGS,
    ...LOG_SERVER_FLAGS,
    tls: { type: "boolean" },
    ...ACME_FLAGS,
    ...FETCH_FLAGS,
    ...MACHINE_FLAGS,
  });
  if (!v) return 0;
  await ensureDaemonRuntime("server", resolve(v.data as string));
  const allowFetch = allowFetchOf(v);
  return (await import("../daemons/server.ts")).runServer({
    dataDir: resolve(v.data as string),
    store: v.store as string | undefined,
    ...etcdTlsOption(v),
    leaseTtlSeconds: leaseTtlOf(v["lease-ttl"]),
    ...(v.artifacts ? { artifactsDir: resolve(v.artifacts as string) } : {}),
    ...serverOptionsOf(v, v["gateway-url"] as string, allowFetch),
  });
}

function etcdTlsOption(v: Record<string, unknown>): { etcdTls?: EtcdTlsFiles } {
  const etcdTls = etcdTlsOf(v, process.cwd());
  return etcdTls ? { etcdTls } : {};
}

/** `--lease-ttl`: whole seconds, 2 to 60 (etcd refuses shorter leases than its election allows). */
function leaseTtlOf(value: unknown): number {
  const n = Number(value);
  if (!(Number.isInteger(n) && n >= 2 && n <= 60))
    throw new HerdError("invalid", `--lease-ttl must be whole seconds from 2 to 60, got ${value}`);
  return n;
}

/** The CA certificate (PEM) the API's certificate must be signed by: --ca or HERD_CA. */
function caFrom(v: Record<string, unknown>): string | undefined {
  const file = (v.ca as string | undefined) ?? process.env.HERD_CA;
  return file === undefined ? undefined : readCa(file);
}

const cpuFlag = (value: unknown, name: string): number => {
  const n = Number(value);
  if (!(n >= 0 && n <= 1024))
    throw new HerdError("invalid", `--${name} must be a number of cores, got ${value}`);
  return n;
};

/** `--cpu-overcommit`: a ratio of at least 1; absent: the agent's default. */
const cpuOvercommitOf = (value: unknown): { cpuOvercommit?: number } => {
  if (value === undefined) return {};
  const n = Number(value);
  if (!(n >= 1 && n <= 100))
    throw new HerdError(
      "invalid",
      `--cpu-overcommit must be a ratio from 1 to 100 (2: CPU requests up to twice the cores), got ${value}`,
    );
  return { cpuOvercommit: n };
};

const memoryFlag = (value: unknown, name: string): number => {
  try {
    return parseBytes(String(value));
  } catch {
    throw new HerdError("invalid", `--${name} must be a quantity like 512Mi or 4Gi, got ${value}`);
  }
};

/** `--metrics-remote-write URL [--metrics-remote-write-header NAME=VALUE]...`: where every stored sample goes too. */
export function remoteWriteOf(v: Record<string, unknown>): {
  remoteWrite?: { url: string; headers: Record<string, string> };
} {
  const url = v["metrics-remote-write"] as string | undefined;
  const given = v["metrics-remote-write-header"];
  if (url === undefined) {
    if (given !== undefined)
      throw new HerdError("invalid", "--metrics-remote-write-header needs --metrics-remote-write URL");
    return {};
  }
  if (!/^https?:\/\/[^/]/.test(url)) {
    throw new HerdError(
      "invalid",
      `--metrics-remote-write must be an http(s) URL such as http://prometheus:9090/api/v1/write, got ${url}`,
    );
  }
  return { remoteWrite: { url, headers: headerFlags(given, "metrics-remote-write-header") } };
}

/** Metrics storage and collection, from the --metrics-* and --scrape-interval flags. */
const metricsOf = (v: Record<string, unknown>) => ({
  storage: {
    maxBytes: memoryFlag(v["metrics-max-size"], "metrics-max-size"),
    rawRetentionMs: durationFlag(v["metrics-retention"], "metrics-retention", 60_000),
    downsampledRetentionMs: durationFlag(
      v["metrics-downsampled-retention"],
      "metrics-downsampled-retention",
      60_000,
    ),
  },
  scrapeIntervalMs: durationFlag(v["scrape-interval"], "scrape-interval", 1000),
  ...remoteWriteOf(v),
  query: {
    timeoutMs: durationFlag(v["query-timeout"], "query-timeout", 1000),
    ...(v["query-concurrency"] === undefined
      ? {}
      : { concurrency: wholeFlag(v["query-concurrency"], "query-concurrency", 64) }),
    maxSamples: wholeFlag(v["query-max-samples"], "query-max-samples", 1e9),
  },
});

const QUERY_FLAGS = {
  "query-timeout": { type: "string", default: "30s" },
  "query-concurrency": { type: "string" },
  "query-max-samples": { type: "string", default: "10000000" },
} as const;

/** A whole number flag from 1 to `max`; a HerdError naming the flag otherwise. */
function wholeFlag(value: unknown, name: string, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new HerdError("invalid", `--${name} must be a whole number from 1 to ${max}, got ${value}`);
  return n;
}

/** One resource unit, from --unit-cpu and --unit-memory. */
const unitOf = (v: Record<string, unknown>) => {
  const cpu = cpuFlag(v["unit-cpu"], "unit-cpu");
  const memory = memoryFlag(v["unit-memory"], "unit-memory");
  if (!(cpu > 0 && memory > 0))
    throw new HerdError("invalid", "--unit-cpu and --unit-memory must be more than 0");
  return { cpu, memory };
};

export async function runAgent(argv: string[]): Promise<number> {
  const v = flags("agent", argv, {
    server: { type: "string" },
    token: { type: "string" },
    "join-token": { type: "string" },
    ca: { type: "string" },
    name: { type: "string" },
    data: { type: "string", default: ".herd-agent" },
    address: { type: "string", default: "127.0.0.1" },
    label: { type: "string", multiple: true },
    taint: { type: "string", multiple: true },
    cpu: { type: "string" },
    memory: { type: "string" },
    "reserve-cpu": { type: "string" },
    "reserve-memory": { type: "string" },
    "cpu-overcommit": { type: "string" },
    "eviction-memory": { type: "string" },
    ports: { type: "string" },
    "metrics-port": { type: "string" },
    "metrics-host": { type: "string", default: "127.0.0.1" },
    "internal-gateway": { type: "string" },
    "docker-socket": { type: "string" },
    dockerd: { type: "string" },
    registry: { type: "string" },
    "serve-registry": { type: "string" },
  });
  if (!v) return 0;
  await ensureDaemonRuntime("agent", resolve(v.data as string));
  const server = (v.server as string | undefined) ?? process.env.HERD_SERVER;
  if (!server) throw new HerdError("invalid", "no server: pass --server URL or set HERD_SERVER");
  const labels: Record<string, string> = {};
  for (const l of (v.label as string[] | undefined) ?? []) {
    const m = /^([A-Za-z0-9._/-]{1,63})=(.{0,255})$/.exec(l);
    if (!m) throw new HerdError("invalid", `--label must be key=value, got ${l}`);
    labels[m[1]] = m[2];
  }
  const taints: Taint[] = ((v.taint as string[] | undefined) ?? []).map((t) => {
    const m = /^([A-Za-z0-9._/-]{1,63})(?:=([A-Za-z0-9._-]{0,63}))?$/.exec(t);
    if (!m) throw new HerdError("invalid", `--taint must be key or key=value, got ${t}`);
    return m[2] === undefined ? { key: m[1] } : { key: m[1], value: m[2] };
  });
  const capacity = { cpu: availableParallelism(), memory: totalmem() };
  if (v.cpu !== undefined) capacity.cpu = cpuFlag(v.cpu, "cpu");
  if (v.memory !== undefined) capacity.memory = memoryFlag(v.memory, "memory");
  const reserve = { ...(await import("../agent/agent.ts")).DEFAULT_RESERVE };
  if (v["reserve-cpu"] !== undefined) reserve.cpu = cpuFlag(v["reserve-cpu"], "reserve-cpu");
  if (v["reserve-memory"] !== undefined) reserve.memory = memoryFlag(v["reserve-memory"], "reserve-memory");
  const ca = caFrom(v);
  return (await import("../daemons/agent.ts")).runAgent({
    server,
    credentials: {
      token: v.token as string | undefined,
      joinToken: (v["join-token"] as string | undefined) ?? process.env.HERD_JOIN_TOKEN,
      envToken: process.env.HERD_TOKEN,
      ca,
    },
    ...(ca === undefined ? {} : { ca }),
    name: (v.name as string | undefined) ?? hostname(),
    dataDir: resolve(v.data as string),
    address: v.address as string,
    labels,
    taints,
    capacity,
    reserve,
    ...cpuOvercommitOf(v["cpu-overcommit"]),
    ...(v["eviction-memory"] !== undefined
      ? { evictionMemory: memoryFlag(v["eviction-memory"], "eviction-memory") }
      : {}),
    ...(v.ports !== undefined ? { ports: parsePortRange(v.ports as string) } : {}),
    metricsPort: metricsPortOf(v["metrics-port"], "metrics-port", DEFAULT_AGENT_METRICS_PORT),
    metricsHost: v["metrics-host"] as string,
    metricsPortOrFree: v["metrics-port"] === undefined,
    ...(v["internal-gateway"] === undefined
      ? {}
      : { internalGateway: resolve(v["internal-gateway"] as string) }),
    ...(v["docker-socket"] === undefined ? {} : { dockerSocket: resolve(v["docker-socket"] as string) }),
    ...(v.dockerd === undefined ? {} : { dockerd: resolve(v.dockerd as string) }),
    ...(v.registry === undefined ? {} : { registry: hostPortFlag(v.registry, "registry") }),
    ...(v["serve-registry"] === undefined
      ? {}
      : { serveRegistry: hostPortFlag(v["serve-registry"], "serve-registry") }),
  });
}

/** A registry address: host:port, as image references name it. */
function hostPortFlag(value: unknown, flag: string): string {
  const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(String(value));
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
    throw new HerdError("invalid", `--${flag} must be HOST:PORT, got ${String(value)}`);
  return String(value);
}

export async function runDown(argv: string[]): Promise<number> {
  const v = flags("down", argv, { data: { type: "string" } });
  if (!v) return 0;
  // As other commands find it: HERD_DATA, else the nearest .herd here or above.
  const dataDir =
    v.data === undefined
      ? await findDataDir({ env: process.env, cwd: process.cwd() })
      : resolve(v.data as string);
  if (!existsSync(dataDir)) {
    throw new HerdError(
      "invalid",
      v.data === undefined
        ? `found no data dir (no .herd in ${process.cwd()} or a parent, no HERD_DATA, no ~/.herd): say which with --data DIR`
        : `${dataDir} does not exist: say which data dir with --data DIR`,
    );
  }
  const stopped = await (await import("../daemons/down.ts")).stopPlatform(dataDir);
  const parts = [
    ...(stopped.up ? ["herd up"] : []),
    ...(stopped.gateway ? ["the gateway"] : []),
    ...(stopped.instances > 0
      ? [`${stopped.instances} app instance${stopped.instances === 1 ? "" : "s"}`]
      : []),
    ...(stopped.engine ? ["herd's Docker engine"] : []),
  ];
  process.stdout.write(
    parts.length === 0
      ? `herd down: nothing was running in ${dataDir}\n`
      : `herd down: stopped ${parts.join(", ")}\n`,
  );
  return 0;
}

/** The flags `herd up` and `herd server` take for ACME certificates (api/acme.ts). */
const ACME_FLAGS = {
  "acme-directory": { type: "string" },
  "acme-email": { type: "string" },
  "acme-domain": { type: "string", multiple: true },
  "acme-ca": { type: "string" },
} as const;

/** ACME from the flags: a directory and the domains it is for, or nothing. */
function acmeOf(v: Record<string, unknown>): AcmeSettings | undefined {
  const directory = v["acme-directory"] as string | undefined;
  const domains = ((v["acme-domain"] as string[] | undefined) ?? []).map((d) =>
    d.toLowerCase().replace(/\.$/, ""),
  );
  if (directory === undefined) {
    if (domains.length > 0 || v["acme-email"] !== undefined || v["acme-ca"] !== undefined)
      throw new HerdError("invalid", "--acme-domain, --acme-email and --acme-ca need --acme-directory URL");
    return undefined;
  }
  if (!/^https?:\/\/[^\s/]+/.test(directory))
    throw new HerdError("invalid", `--acme-directory must be an http(s) URL, got ${directory}`);
  if (domains.length === 0)
    throw new HerdError(
      "invalid",
      "--acme-directory needs at least one --acme-domain DOMAIN: the routed hosts under it get ACME certificates",
    );
  for (const d of domains) {
    if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(d))
      throw new HerdError("invalid", `--acme-domain must be a DNS name such as example.com, got ${d}`);
  }
  const email = v["acme-email"] as string | undefined;
  if (email !== undefined && !/^[^\s@]+@[^\s@]+$/.test(email))
    throw new HerdError("invalid", `--acme-email must be an email address, got ${email}`);
  const caFile = v["acme-ca"] as string | undefined;
  return {
    directory,
    domains,
    ...(email !== undefined ? { email } : {}),
    ...(caFile !== undefined ? { ca: readCa(resolve(caFile), "--acme-ca") } : {}),
  };
}

/** The control plane's options from the flags `herd up` and `herd server` share. */
function serverOptionsOf(
  v: Record<string, unknown>,
  gatewayUrl: string,
  allowFetch: readonly string[] | undefined,
) {
  return {
    port: portOf(v.port, "port"),
    host: v.host as string,
    settings: {
      gatewayUrl,
      ...nodeTimeouts(v["node-lost-after"]),
      unit: unitOf(v),
      keepReleases: keepReleasesOf(v["keep-releases"]),
    },
    maxUploadBytes: megabytes(v["max-upload-mb"]),
    traces: tracesOptionsFromFlags(v),
    metrics: metricsOf(v),
    alerts: { intervalMs: durationFlag(v["alert-interval"], "alert-interval", 1000) },
    logs: logsOptionsFromFlags(v),
    tls: v.tls === true,
    ...(v["grpc-port"] !== undefined ? { grpcPort: portOf(v["grpc-port"], "grpc-port") } : {}),
    acme: acmeOf(v),
    allowFetch,
    machines: machinesOf(v),
  };
}
