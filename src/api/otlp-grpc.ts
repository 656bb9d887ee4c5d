/**
 * The control plane's OTLP/gRPC listener (observe/otlp/grpc.ts): each call is
 * injected into the API as the OTLP/HTTP protobuf request it carries, so it
 * passes the same authentication, permission check, tenant stamping, queue
 * limits and audit as `POST /api/v1/otlp/v1/<signal>`.
 */

import type { FastifyInstance } from "fastify";
import type { Logger } from "../common/log.ts";
import { type GrpcServer, startGrpcServer } from "../observe/otlp/grpc.ts";

export function startOtlpGrpc(
  app: FastifyInstance,
  options: { host: string; port: number; tls?: { cert: string; key: string }; logger: Logger },
): Promise<GrpcServer> {
  return startGrpcServer({
    host: options.host,
    port: options.port,
    ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}),
    onError: (err) => options.logger.warn("OTLP/gRPC stream failed", { err }),
    forward: async (signal, message, authorization, peer) => {
      const res = await app.inject({
        method: "POST",
        url: `/api/v1/otlp/v1/${signal}`,
        // The caller's address, for the 401 rate limit and the logs (inject would say 127.0.0.1).
        ...(peer !== undefined ? { remoteAddress: peer } : {}),
        headers: {
          "content-type": "application/x-protobuf",
          ...(authorization !== undefined ? { authorization } : {}),
        },
        payload: message,
      });
      return { status: res.statusCode, body: res.rawPayload };
    },
  });
}
