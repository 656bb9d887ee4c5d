/**
 * The telemetry relay: the one way an instance reaches the control plane. The
 * firewall closes the API's port to instances (firewall.ts); the agent listens
 * on 127.0.0.1, outside the instance port range, and passes on the ingest
 * routes only, with the instance's own Authorization (its tenant's ingest
 * token, from its OTEL_* env). Everything else is a 403.
 *
 *   instance ─ POST /api/v1/otlp/v1/{traces,metrics,logs} ─► relay ─► control plane (same path and query)
 *   instance ─ POST /api/v1/traces/otlp/v1/traces         ─► relay ─► control plane
 *   instance ─ POST /api/v1/metrics/write                  ─► relay ─► control plane
 *   instance ─ anything else                               ─► 403 {code: "forbidden"}
 *   instance ─ OTLP/gRPC Export (second port, h2c)         ─► relay ─► POST /api/v1/otlp/v1/<signal> (protobuf)
 *
 * The ports are kept in `<dataDir>/relay.json` and taken again by the next
 * agent, so instances it adopts keep a working endpoint.
 */

import { readFileSync, renameSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { nodeHttp } from "../common/node-http.ts";

const { createServer } = nodeHttp;

import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Logger } from "../common/log.ts";
import { serversOf } from "../common/server-list.ts";
import { type GrpcServer, startGrpcServer } from "../observe/otlp/grpc.ts";

/** The requests the relay passes on: the telemetry:write routes of the API. */
export const RELAYED_ROUTES: ReadonlySet<string> = new Set([
  "POST /api/v1/otlp/v1/traces",
  "POST /api/v1/otlp/v1/metrics",
  "POST /api/v1/otlp/v1/logs",
  "POST /api/v1/traces/otlp/v1/traces",
  "POST /api/v1/metrics/write",
]);

/** The API's own body limit. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const FORWARD_TIMEOUT_MS = 10_000;
const PASSED_HEADERS = ["authorization", "content-type", "content-encoding"];

export interface TelemetryRelayOptions {
  /** The control plane's base URL. */
  server: string;
  /** The CA that signed the control plane's certificate, when not a public one. */
  ca?: string;
  /** Where the chosen port is kept between agents. */
  dataDir: string;
  logger: Logger;
}

export interface TelemetryRelay {
  /** Base URL for instances, e.g. http://127.0.0.1:41234 */
  url: string;
  /** The OTLP/gRPC endpoint for instances, e.g. http://127.0.0.1:41235 */
  grpcUrl: string;
  close(): Promise<void>;
}

/** Starts the relay on the port an earlier agent used (or a free one). */
export async function startTelemetryRelay(options: TelemetryRelayOptions): Promise<TelemetryRelay> {
  const server = createServer((req, res) => {
    relay(req, res, options).catch((err) => {
      options.logger.warn("telemetry relay failed", { err });
      if (!res.headersSent) answer(res, 502, "unavailable", "the control plane did not answer");
      else res.destroy();
    });
  });
  const stateFile = join(options.dataDir, "relay.json");
  const saved = readPort(stateFile, "port");
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
  try {
    await listen(saved ?? 0);
  } catch (err) {
    if (saved === undefined || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    options.logger.warn("the relay's earlier port is taken; adopted instances' spans fail until restarted", {
      port: saved,
    });
    await listen(0);
  }
  const port = (server.address() as AddressInfo).port;
  const grpc = await startRelayGrpc(options, readPort(stateFile, "grpcPort")).catch(async (err) => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw err;
  });
  writeFileSync(`${stateFile}.tmp`, JSON.stringify({ port, grpcPort: grpc.port }));
  renameSync(`${stateFile}.tmp`, stateFile);
  return {
    url: `http://127.0.0.1:${port}`,
    grpcUrl: grpc.url,
    close: async () => {
      await grpc.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function relay(
  req: IncomingMessage,
  res: ServerResponse,
  options: TelemetryRelayOptions,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://relay");
  if (!RELAYED_ROUTES.has(`${req.method} ${url.pathname}`)) {
    req.resume();
    answer(res, 403, "forbidden", `instances reach only ${[...RELAYED_ROUTES].join(" and ")} from here`);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      answer(res, 413, "too_large", `the body is over ${MAX_BODY_BYTES} bytes`);
      req.destroy();
      return;
    }
    chunks.push(chunk);
  }
  const headers: Record<string, string> = {};
  for (const name of PASSED_HEADERS) {
    const value = req.headers[name];
    if (typeof value === "string") headers[name] = value;
  }
  const upstream = await serversOf(options.server).request(`${url.pathname}${url.search}`, {
    ca: options.ca,
    method: "POST",
    headers,
    body: Buffer.concat(chunks),
    signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
  });
  const body = await upstream.buffer();
  res.writeHead(upstream.status, {
    "content-type": upstream.headers["content-type"] ?? "application/json",
    "content-length": body.length,
  });
  res.end(body);
}

function answer(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ code, message }));
}

/** OTLP/gRPC for instances: each call posted to the control plane's OTLP/HTTP route as protobuf. */
async function startRelayGrpc(
  options: TelemetryRelayOptions,
  saved: number | undefined,
): Promise<GrpcServer> {
  const start = (port: number) =>
    startGrpcServer({
      host: "127.0.0.1",
      port,
      onError: (err) => options.logger.warn("telemetry relay gRPC stream failed", { err }),
      forward: async (signal, message, authorization) => {
        const upstream = await serversOf(options.server).request(`/api/v1/otlp/v1/${signal}`, {
          ca: options.ca,
          method: "POST",
          headers: {
            "content-type": "application/x-protobuf",
            ...(authorization !== undefined ? { authorization } : {}),
          },
          body: message,
          signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
        });
        return { status: upstream.status, body: await upstream.buffer() };
      },
    });
  try {
    return await start(saved ?? 0);
  } catch (err) {
    if (saved === undefined || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    options.logger.warn(
      "the relay's earlier gRPC port is taken; adopted instances' gRPC telemetry fails until restarted",
      {
        port: saved,
      },
    );
    return start(0);
  }
}

function readPort(file: string, key: "port" | "grpcPort"): number | undefined {
  try {
    const port = (JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>)[key];
    return Number.isInteger(port) && (port as number) > 0 && (port as number) < 65536
      ? (port as number)
      : undefined;
  } catch {
    return undefined;
  }
}
