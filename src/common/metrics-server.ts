/**
 * A component's metrics listener: `GET /metrics` in Prometheus text format,
 * on its own port, so scrapes never meet app routes and the port can stay
 * private (127.0.0.1 by default). The gateway runs one (with worker processes,
 * in the primary, which asks every worker for its counters at each scrape:
 * gateway/cluster.ts), and so does a node agent (agent/agent.ts).
 */

import type http from "node:http";
import type { AddressInfo } from "node:net";
import { HerdError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { nodeHttp } from "./node-http.ts";

/** Prometheus text exposition format 0.0.4. */
const TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Default port of the gateway's metrics listener (`herd gateway --metrics-port`). */
export const DEFAULT_METRICS_PORT = 9180;
/** Default port of a node agent's metrics listener (`herd agent --metrics-port`). */
export const DEFAULT_AGENT_METRICS_PORT = 9181;

/** A running metrics listener. */
export interface MetricsServer {
  port: number;
  /** `http://host:port/metrics`. */
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `render()` as GET /metrics on `host:port` (0: a free port). With
 * `orFreePort` a port in use is not an error: it takes a free one and warns
 * (for the default port, so a second gateway on a machine still starts).
 */
export async function startMetricsServer(options: {
  port: number;
  host: string;
  orFreePort?: boolean;
  render: () => Promise<string>;
  logger: Logger;
  /** Whose metrics, for messages: "gateway", "agent". */
  component: string;
}): Promise<MetricsServer> {
  const server = nodeHttp.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end(`not found: the ${options.component}'s metrics are at /metrics\n`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("method not allowed\n");
      return;
    }
    options.render().then(
      (text) => {
        res.writeHead(200, {
          "content-type": TEXT_CONTENT_TYPE,
          "content-length": Buffer.byteLength(text),
          "cache-control": "no-store",
        });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (err: Error) => {
        options.logger.error(`could not collect the ${options.component}'s metrics`, { error: err });
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`could not collect metrics: ${err.message}\n`);
      },
    );
  });
  try {
    await listen(server, options.port, options.host);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    if (!options.orFreePort) {
      throw new HerdError("unavailable", `metrics port ${options.port} is in use; pass --metrics-port`);
    }
    await listen(server, 0, options.host);
    options.logger.warn("metrics port in use; serving metrics on a free port instead", {
      wanted: options.port,
      port: (server.address() as AddressInfo).port,
    });
  }
  const { port } = server.address() as AddressInfo;
  const host = options.host;
  const reachable =
    host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return {
    port,
    url: `http://${reachable}:${port}/metrics`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
