/**
 * WebSocket (any Upgrade) requests, once the chain admitted them: their own
 * upstream connection (node:http, `agent: false`: an upgraded socket leaves
 * any pool for good), then the two sockets piped together. A tunnel does not
 * count as a request in flight: it may live for hours.
 *
 *   chain.ts ENDPOINT ─► openTunnel ─► nodeHttp.request(Upgrade) ─► 101: pipe both ways
 *                                                          └─► any other answer: relayed, closed
 */

import type http from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { nodeHttp } from "../common/node-http.ts";
import type { Exchange } from "./exchange.ts";
import { rawHead } from "./forwarded.ts";
import { CONNECT_FAILURES } from "./node-health.ts";
import { recordOutcome } from "./pick.ts";
import { writeRawError } from "./replies.ts";
import { rewritePath } from "./route-match.ts";
import type { Backend, Endpoint, RouteEntry } from "./route-table.ts";

/** Opens the upstream half of an admitted upgrade to `endpoint` and joins the two sockets. */
export function openTunnel(x: Exchange, endpoint: Endpoint): void {
  const { proxy, req } = x;
  const socket = x.socket as Duplex;
  const head = x.head as Buffer;
  const route = x.route as RouteEntry;
  const backend = x.backend as Backend;
  const headers = x.headers;
  headers.push("Connection", "Upgrade", "Upgrade", req.headers.upgrade ?? "websocket");
  const idleMs = route.timeouts?.idleMs ?? proxy.upstreamTimeoutMs;
  const upstream = nodeHttp.request({
    host: endpoint.address,
    port: endpoint.port,
    method: req.method,
    path: rewritePath(route, x.url),
    headers,
    agent: false,
    timeout: Math.min(idleMs, route.timeouts?.connectMs ?? proxy.connectTimeoutMs),
  });
  const tunnels = proxy.tunnels;
  tunnels.add(socket);
  socket.on("close", () => {
    tunnels.delete(socket);
    upstream.destroy();
  });
  upstream.on("socket", (upSocket: Socket) => {
    // The connect timeout until connected; then the idle timeout until the answer.
    upSocket.once("connect", () => upstream.setTimeout(idleMs));
  });
  upstream.on("upgrade", (upRes: http.IncomingMessage, upSocket: Socket, upHead: Buffer) => {
    recordOutcome(backend, endpoint, true);
    upSocket.setTimeout(0);
    upSocket.on("error", destroyQuietly);
    tunnels.add(upSocket);
    upSocket.on("close", () => {
      tunnels.delete(upSocket);
      socket.destroy();
    });
    socket.on("close", () => upSocket.destroy());
    socket.write(rawHead(upRes, false));
    if (upHead.length > 0) socket.write(upHead);
    if (head.length > 0) upSocket.write(head);
    upSocket.pipe(socket);
    socket.pipe(upSocket);
  });
  // The upstream refused the upgrade: relay its answer and close.
  upstream.on("response", (upRes: http.IncomingMessage) => {
    recordOutcome(backend, endpoint, (upRes.statusCode ?? 502) < 500);
    socket.write(rawHead(upRes, true));
    upRes.pipe(socket);
  });
  upstream.on("timeout", () => {
    recordOutcome(backend, endpoint, false);
    writeRawError(socket, 504, "timeout", `${backend.name} did not answer in time`);
    upstream.destroy();
  });
  upstream.on("error", (err: NodeJS.ErrnoException) => {
    // As for a proxied request: a connection that could not be opened makes the whole node suspect.
    if (CONNECT_FAILURES.has(err.code ?? "")) endpoint.node.suspect(Date.now());
    if (socket.destroyed) return;
    recordOutcome(backend, endpoint, false);
    proxy.logger.warn("upgrade to upstream failed", {
      service: backend.name,
      endpoint: endpoint.instance,
      error: err,
    });
    writeRawError(
      socket,
      502,
      "bad_gateway",
      `${backend.name} did not accept the connection (${err.code ?? err.message})`,
    );
  });
  upstream.end();
}

/** An error on a socket the gateway is done with: just close it. */
export function destroyQuietly(this: Duplex): void {
  this.destroy();
}
