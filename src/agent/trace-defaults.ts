/** The OpenTelemetry settings an instance's environment gets from herd. */

import type { DesiredInstance } from "../model/protocol.ts";

/**
 * The OpenTelemetry SDK settings every instance gets unless its service's env
 * sets them: its name as the gateway's client spans call it (`app/service`,
 * so the dependency map joins the two), herd's resource attributes (merged
 * into the service's own, whose keys win), and the control plane's OTLP
 * ingest for all three signals (through the agent's telemetry relay: the
 * API's port is closed to instances) with the write-only ingest token:
 * OTLP/HTTP protobuf (`/api/v1/otlp`, the SDK adds `/v1/traces` etc.), or,
 * when the service sets OTEL_EXPORTER_OTLP_PROTOCOL=grpc, the relay's gRPC
 * port. A service that names its own endpoint (any signal, or all) gets
 * neither the endpoint, the token nor the protocol: its telemetry goes where
 * it says, without herd's secret.
 */
export function traceDefaults(
  d: Pick<DesiredInstance, "id" | "app" | "service" | "tenant" | "run">,
  server: string,
  ingestToken: string | undefined,
  grpcUrl?: string,
): Record<string, string> {
  const own = d.run.env;
  const out: Record<string, string> = {};
  if (own.OTEL_SERVICE_NAME === undefined) out.OTEL_SERVICE_NAME = `${d.app}/${d.service}`;
  const herd: Record<string, string> = {
    "herd.tenant": d.tenant,
    "herd.app": d.app,
    "herd.service": d.service,
    "herd.instance": d.id,
  };
  const given = (own.OTEL_RESOURCE_ATTRIBUTES ?? "").split(",").filter((pair) => pair.includes("="));
  const givenKeys = new Set(given.map((pair) => pair.slice(0, pair.indexOf("=")).trim()));
  const added = Object.entries(herd)
    .filter(([key]) => !givenKeys.has(key))
    .map(([key, value]) => `${key}=${encodeURIComponent(value)}`);
  out.OTEL_RESOURCE_ATTRIBUTES = [...given, ...added].join(",");
  const ownEndpoint = OWN_ENDPOINT.some((name) => own[name] !== undefined);
  if (ingestToken === undefined || ownEndpoint) return out;
  const grpc = own.OTEL_EXPORTER_OTLP_PROTOCOL === "grpc";
  if (grpc && grpcUrl === undefined) return out;
  out.OTEL_EXPORTER_OTLP_ENDPOINT = grpc ? (grpcUrl as string) : `${server.replace(/\/+$/, "")}/api/v1/otlp`;
  if (own.OTEL_EXPORTER_OTLP_HEADERS === undefined) {
    // W3C baggage form: the value is percent-encoded (the space after Bearer).
    out.OTEL_EXPORTER_OTLP_HEADERS = `authorization=${encodeURIComponent(`Bearer ${ingestToken}`)}`;
  }
  if (own.OTEL_EXPORTER_OTLP_PROTOCOL === undefined) out.OTEL_EXPORTER_OTLP_PROTOCOL = "http/protobuf";
  return out;
}

/** Env names by which a service sends its telemetry elsewhere. */
const OWN_ENDPOINT = [
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
  "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
];
