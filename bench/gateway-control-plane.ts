// A stand-in control plane for bench/gateway.ts, run in the bench's process:
// it answers the gateway's `GET /api/v1/snapshot` with fixed objects and keeps
// `GET /api/v1/watch` open as an NDJSON stream of pings (nothing changes while
// the bench measures). Objects are built with the gateway's own test factories.
// With `spans`, the gateway's span batches are relayed to a real control
// plane's span ingest (bench/tracing-cost.ts), so its spans are stored for real.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { testInstance, testNode, testService } from "../src/gateway/testing.ts";
import type { StoredObject } from "../src/store/store.ts";
import { type Child, freePort, onCleanup, ROOT, startChild, untilServes } from "./harness.ts";

export const BENCH_HOST = "bench.localhost";
/** The token the stand-in control plane takes from the gateways startBenchGateway starts. */
export const BENCH_TOKEN = "bench-token";

/** The objects of one routed service with one running instance at `upstreamPort` on 127.0.0.1. */
export function benchObjects(upstreamPort: number): StoredObject[] {
  const service = testService("default", "bench", "web", [{ host: BENCH_HOST, path: "/" }]);
  const node = testNode("bench-node", "127.0.0.1");
  const instance = testInstance("bench-web-1", { app: "bench", service: "web" }, node.name, upstreamPort);
  const stored = (
    kind: StoredObject["kind"],
    key: string,
    value: unknown,
    revision: number,
  ): StoredObject => ({
    kind,
    key,
    revision,
    createRevision: revision,
    value,
  });
  return [
    stored("node", node.name, node, 1),
    stored("service", `${service.tenant}/${service.app}/${service.name}`, service, 2),
    stored("instance", instance.id, instance, 3),
  ];
}

export interface BenchControlPlane {
  url: string;
  close(): Promise<void>;
}

/** Serves `objects` as the snapshot to callers bearing `token`, on an ephemeral port of 127.0.0.1. */
export async function startBenchControlPlane(
  token: string,
  objects: StoredObject[],
  spans?: { url: string; token: string },
): Promise<BenchControlPlane> {
  const revision = Math.max(0, ...objects.map((o) => o.revision));
  const watches = new Set<http.ServerResponse>();
  const ping = `${JSON.stringify({ type: "ping" })}\n`;
  const server = http.createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "unauthorized", message: "bad token" }));
      return;
    }
    const url = new URL(req.url ?? "/", "http://x");
    const kinds = new Set((url.searchParams.get("kinds") ?? "service,instance,node").split(","));
    if (req.method === "GET" && url.pathname === "/api/v1/snapshot") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ revision, items: objects.filter((o) => kinds.has(o.kind)) }));
      return;
    }
    if (req.method === "GET" && url.pathname === "/api/v1/watch") {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write(ping);
      watches.add(res);
      res.on("close", () => watches.delete(res));
      return;
    }
    if (spans && req.method === "POST" && url.pathname === "/api/v1/traces/gateway") {
      relay(req, res, spans);
      return;
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "not_found", message: `no route ${req.method} ${url.pathname}` }));
  });
  const pinger = setInterval(() => {
    for (const res of watches) res.write(ping);
  }, 2000);
  pinger.unref();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      clearInterval(pinger);
      for (const res of watches) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const relayAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });

/** Streams a span post on to the real ingest with its token, and its answer back. */
function relay(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  to: { url: string; token: string },
): void {
  const out = http.request(
    to.url,
    {
      method: "POST",
      agent: relayAgent,
      headers: {
        "content-type": "application/json",
        "content-length": req.headers["content-length"] ?? "",
        authorization: `Bearer ${to.token}`,
      },
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, { "content-type": "application/json" });
      answer.pipe(res);
    },
  );
  out.on("error", (err) => {
    res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "unavailable", message: err.message }));
  });
  req.pipe(out);
}

/** How startBenchGateway starts one `herd gateway`. */
export interface BenchGatewayOptions {
  /** Its data dir is `<base>/<id>-data`. */
  base: string;
  id: string;
  /** The child's name in the bench's output. */
  name: string;
  objects: StoredObject[];
  /** Headers every request to it carries besides Host (the policies' ones). */
  headers?: Record<string, string>;
  /** The checkout whose herd runs (BENCH_BASELINE: another one). Default: this one. */
  root?: string;
  /** More `herd gateway` flags, e.g. `--workers 1`. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
}

/**
 * `herd gateway` started as a user would (default settings, its own metrics
 * port), following a stand-in control plane that serves `objects`; resolves
 * once it has answered 20 requests on fresh connections (a gateway with
 * several workers routes only when all have the table).
 */
export async function startBenchGateway(
  o: BenchGatewayOptions,
): Promise<{ url: string; headers: Record<string, string>; child: Child }> {
  const controlPlane = await startBenchControlPlane(BENCH_TOKEN, o.objects);
  onCleanup(controlPlane.close);
  const port = await freePort();
  const child = startChild(
    o.name,
    process.execPath,
    [
      join(o.root ?? ROOT, "src/cli/main.ts"),
      "gateway",
      ...["--server", controlPlane.url, "--token", BENCH_TOKEN, "--port", String(port)],
      ...["--host", "127.0.0.1", "--data", join(o.base, `${o.id}-data`), "--metrics-port", "0"],
      ...(o.args ?? []),
    ],
    o.env,
  );
  const url = `http://127.0.0.1:${port}/`;
  // "Host" as wrk spells it: wrk adds its own Host header unless this one matches its spelling.
  const headers = { Host: BENCH_HOST, ...o.headers };
  for (let i = 0; i < 20; i++) await untilServes(url, headers, child);
  return { url, headers, child };
}
