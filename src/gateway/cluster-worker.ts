/**
 * A gateway worker process (forked by cluster.ts): builds a RouteTable from
 * each set of objects its primary sends and proxies requests on the shared
 * port. It follows no control plane itself and writes no cache.
 *
 * It listens once its first configuration has arrived, so it never answers
 * from an empty table while the primary has a real one. It exits when the
 * primary says stop, and at once when the IPC channel closes (the primary is
 * gone, perhaps by SIGKILL): no orphan keeps the port.
 */

import cluster from "node:cluster";
import { trustCaInProcess } from "../common/api-ca.ts";
import { createLogger } from "../common/log.ts";
import { AcmeChallenges } from "./acme-challenge.ts";
import type {
  AppliedMessage,
  ConfigMessage,
  FailedMessage,
  HealthMessage,
  ListeningMessage,
  MetricsReply,
  MetricsRequest,
  StopMessage,
  WorkerSettings,
} from "./cluster.ts";
import { WORKER_ENV } from "./cluster.ts";
import { drainServers } from "./drain.ts";
import {
  heldRequests,
  hostCertificates,
  jwksSettings,
  listeners,
  loadReporter,
  tracesFor,
} from "./gateway.ts";
import { markDown } from "./health-probe.ts";
import { INTERNAL_HOST, InternalListener } from "./internal-listener.ts";
import { processFamilies } from "./metrics.ts";
import { GatewayProxy } from "./proxy.ts";
import { LeaseClient, type LeaseReply, type LeaseRequest } from "./rate-lease.ts";
import { buildRouteTable } from "./route-table.ts";
import { loadCertificates, watchCertificates } from "./tls.ts";

if (!cluster.isWorker || process.env[WORKER_ENV] === undefined) {
  throw new Error("cluster-worker.ts is started by the gateway primary (cluster.ts), not by hand");
}

const settings = JSON.parse(process.env[WORKER_ENV]) as WorkerSettings;
// Its calls to the control plane (ACME challenges, certificates, load, spans) verify the API's certificate.
if (settings.ca) trustCaInProcess(settings.ca);
const logger = createLogger("herd").child(`gateway/worker-${cluster.worker?.id ?? process.pid}`);
const proxy = new GatewayProxy({ logger, upstreamTimeoutMs: settings.upstreamTimeoutMs });
const traces = settings.traces && tracesFor({ ...settings.traces, traceSample: settings.traces.sample });
proxy.spans = traces?.spans ?? null;
// ACME challenges and routed hosts' certificates come from the control plane, asked by each worker.
const control = { server: settings.control.server, token: settings.control.token, logger };
proxy.acmeChallenges = new AcmeChallenges(control);
// Each worker holds the requests of services scaled to zero it receives, and asks for their wake itself.
proxy.holds = heldRequests(control, settings.hold);
const onDemand = settings.https ? hostCertificates(control, proxy) : undefined;
// Rate-limit tokens come from the primary's buckets, so a limit holds for all workers together.
const leases =
  settings.workers > 1
    ? new LeaseClient(settings.workers, (request: LeaseRequest) => process.send?.(request))
    : undefined;
/** How route JWKS are fetched and read here: the same settings as the primary's. */
const jwks = jwksSettings({ allowFetch: settings.allowFetch, jwksDir: settings.jwksDir, dataDir: "" });
// Service discovery's internal listener: the same port in every worker, the key the primary chose.
const internal =
  settings.internal && new InternalListener(proxy, Buffer.from(settings.internal.key, "base64url"));
const load = settings.load && loadReporter(settings.load, settings.load.id, logger, () => proxy.table);
load?.start();
let listenStarted = false;
/** The instances the primary's probes found down; applied to every table built here. */
let down: ReadonlySet<string> = new Set();

// The primary is gone: release the port now rather than serve a table nobody updates.
process.on("disconnect", () => process.exit(0));
// Ctrl-C (or a SIGTERM to the group) reaches every process of it; the primary decides when
// workers stop, and drains them first.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => {});

type FromPrimary = ConfigMessage | HealthMessage | StopMessage | MetricsRequest | LeaseReply;

process.on("message", (message: FromPrimary) => {
  if (message.type === "lease") leases?.answer(message);
  else if (message.type === "config") {
    // The primary built this config already; a failure here is still refused, never half-applied.
    try {
      const table = buildRouteTable(message.objects, message.revision, {
        previous: proxy.table,
        share: 1 / Math.max(1, settings.workers),
        leases,
        logger,
        ...jwks,
      });
      markDown(table, down);
      proxy.table = table;
      process.send?.({ type: "applied", revision: message.revision } satisfies AppliedMessage);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      logger.warn("configuration refused; the last good table keeps serving", {
        version: message.revision,
        error,
      });
      process.send?.({ type: "applied", revision: message.revision, error } satisfies AppliedMessage);
    }
    if (!listenStarted) {
      listenStarted = true;
      void listen();
    }
  } else if (message.type === "metrics") {
    void processFamilies(proxy).then((families) =>
      process.send?.({ type: "metrics", id: message.id, families } satisfies MetricsReply),
    );
  } else if (message.type === "health") {
    down = new Set(message.down);
    markDown(proxy.table, down);
  } else if (message.type === "stop") {
    const drained = message.drainMs ? drainServers(listeners(proxy), message.drainMs) : Promise.resolve();
    void drained
      .then(() => Promise.all([proxy.close(), internal?.close(), traces?.close(), load?.close()]))
      .finally(() => process.exit(0));
  }
});

async function listen(): Promise<void> {
  try {
    const reusePort = settings.reusePort ?? false;
    await proxy.listen(settings.port, settings.host, reusePort);
    process.send?.({ type: "listening" } satisfies ListeningMessage);
    if (settings.https) {
      const { port, certificates } = settings.https;
      await proxy.listenHttps(port, settings.host, loadCertificates(certificates, onDemand), reusePort);
      process.send?.({ type: "listening" } satisfies ListeningMessage);
      watchCertificates(certificates, logger, (next) => proxy.useCertificates(next), undefined, onDemand);
    }
    if (internal && settings.internal) {
      await internal.listen(settings.internal.port, INTERNAL_HOST);
      process.send?.({ type: "listening" } satisfies ListeningMessage);
    }
  } catch (err) {
    process.send?.(
      { type: "failed", message: err instanceof Error ? err.message : String(err) } satisfies FailedMessage,
      () => process.exit(1),
    );
  }
}
