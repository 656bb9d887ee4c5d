/**
 * The request path, the same for HTTP requests and WebSocket upgrades:
 * route the request, then run its route's chain of stages (compiled when the
 * table was built, stages.ts) over its Exchange.
 *
 *   admit: one Host? ─► ACME challenge ─► status page (loopback peers only) ─► route ─► runChain
 *   runChain: stages[x.stage], … each returns GO (next stage) or STOP (it answered, or it waits:
 *             a JWKS fetch or a worker's rate-limit lease; then `resume` runs the chain again
 *             from the stage that waited)
 *
 * A stage that refuses answers through `refuse`: JSON on the HTTP response
 * (counted in the route's metrics and spans), or raw HTTP/1.1 on an
 * upgrade's socket. Stages are module functions over the Exchange: no
 * closures per request (only a wait makes one).
 */

import { isAcmeChallenge } from "./acme-challenge.ts";
import { sendAggregate } from "./aggregate.ts";
import { AuthFailure } from "./auth.ts";
import { type Exchange, proxyTo } from "./exchange.ts";
import { clientOf, fromLoopback } from "./forwarded.ts";
import * as metrics from "./metrics.ts";
import { chooseBackend, pickEndpoint } from "./pick.ts";
import {
  answered,
  missMessage,
  rateLimitHeaders,
  sendFallback,
  sendJson,
  unavailableMessage,
  writeRawError,
} from "./replies.ts";
import { normalizeHost } from "./route-match.ts";
import type { Backend, RouteEntry } from "./route-table.ts";
import { AGGREGATE, AUTH, BREAKER, CORS, ENDPOINT, LIMIT, SHED, SIZE } from "./stages.ts";
import { openTunnel } from "./tunnel.ts";

/** The gateway's status page: `{version, routes, problems}`, for local sockets only. */
export const STATUS_PATH = "/_herd/status";

const GO = true;
const STOP = false;

/** Routes the request and runs its chain. */
export function admit(x: Exchange): void {
  const proxy = x.proxy;
  const table = proxy.table;
  const req = x.req;
  if (x.duplicateHost) {
    refuse(x, 400, "invalid", "more than one Host header", metrics.INVALID, proxy.unrouted);
    return;
  }
  // ACME HTTP-01: the control plane's answer, before any route (the app never sees these).
  if (proxy.acmeChallenges !== null && x.res !== null && isAcmeChallenge(x.url)) {
    proxy.acmeChallenges.answer(x.url, x.res);
    return;
  }
  // The status page names every route and problem: only for this machine's own connections,
  // whatever Host a remote client sends.
  if (x.url === STATUS_PATH && isLocalHost(x.host) && fromLoopback(req.socket)) {
    const body = { version: table.version, routes: table.routeCount, problems: table.problems };
    if (x.res === null) writeRawJson(x, body);
    else {
      sendJson(x.res, 200, body);
      answered(proxy.unrouted, x.res, metrics.STATUS, x.startedAt);
    }
    return;
  }
  // `req.headers` is built only when some route matches on headers.
  const route = table.route(
    x.host,
    x.url,
    req.method ?? "GET",
    table.matchesHeaders ? req.headers : undefined,
  );
  if (route === undefined) {
    refuse(x, 404, "not_found", missMessage(table, x.host, x.url), metrics.NO_ROUTE, proxy.unrouted);
    return;
  }
  x.route = route;
  x.series = route.stats.home;
  runChain(x);
}

/** Runs the route's stages from `x.stage` until one stops (also internal-listener.ts, with its own route). */
export function runChain(x: Exchange): void {
  const stages = (x.route as RouteEntry).stages;
  for (let i = x.stage; i < stages.length; i++) {
    x.stage = i;
    let go: boolean;
    switch (stages[i]) {
      case CORS:
        go = corsStage(x);
        break;
      case AUTH:
        go = authStage(x);
        break;
      case LIMIT:
        go = limitStage(x);
        break;
      case SIZE:
        go = sizeStage(x);
        break;
      case AGGREGATE:
        go = aggregateStage(x);
        break;
      case BREAKER:
        go = breakerStage(x);
        break;
      case SHED:
        go = shedStage(x);
        break;
      case ENDPOINT:
        go = endpointStage(x);
        break;
      default:
        throw new Error(`unknown gateway stage ${stages[i]}`);
    }
    if (!go) return;
  }
}

/** Runs the chain again from the stage that waited, unless the client left meanwhile. */
function resume(x: Exchange): void {
  const res = x.res;
  if (res === null ? x.socket?.destroyed : res.writableEnded || res.destroyed || x.req.socket.destroyed)
    return;
  runChain(x);
}

function corsStage(x: Exchange): boolean {
  const cors = (x.route as RouteEntry).cors;
  const req = x.req;
  const origin = req.headers.origin;
  if (cors === null || origin === undefined) return GO;
  const allowed = cors.allows(origin);
  const res = x.res;
  if (res === null) {
    // Browsers send Origin with a WebSocket handshake but apply no CORS to it: the gateway refuses
    // a foreign origin itself, or any page could open a socket with the user's cookies.
    if (allowed) return GO;
    refuse(x, 403, "forbidden", `origin ${origin} is not allowed`, metrics.CORS_PREFLIGHT);
    return STOP;
  }
  if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
    // A preflight: answered here, never forwarded.
    if (!allowed) sendJson(res, 403, { code: "forbidden", message: `origin ${origin} is not allowed` });
    else {
      res.writeHead(204, cors.preflightHeaders(origin, req.headers["access-control-request-headers"]));
      res.end();
    }
    answered(x.series as metrics.Series, res, metrics.CORS_PREFLIGHT, x.startedAt);
    return STOP;
  }
  if (allowed) x.cors = cors.responseHeaders(origin);
  return GO;
}

function authStage(x: Exchange): boolean {
  const auth = (x.route as RouteEntry).auth;
  if (auth === null) return GO;
  const verdict = auth.check(x.req, x.url, Date.now());
  if (typeof verdict === "string") {
    x.consumer = verdict;
    if (auth.hideApiKey || auth.hideAuthorization) x.url = auth.hide(x.headers, x.url);
    x.headers.push("X-Consumer-Name", verdict);
    return GO;
  }
  if (verdict instanceof AuthFailure) {
    // With the route's CORS headers, so a browser can read why.
    refuse(x, 401, "unauthorized", verdict.message, metrics.UNAUTHORIZED, undefined, undefined, [
      "WWW-Authenticate",
      verdict.challenge,
      ...(x.cors ?? []),
    ]);
    return STOP;
  }
  // JWKS keys are being fetched (an unknown kid): this stage runs again once they are in.
  void verdict.then(() => resume(x));
  return STOP;
}

function limitStage(x: Exchange): boolean {
  const limit = (x.route as RouteEntry).limit;
  if (limit === null) return GO;
  // A request that waited for a worker's lease (rate-lease.ts) comes back with its verdict.
  let verdict = x.limitVerdict;
  if (verdict === undefined) {
    const taken = limit.take(clientOf(x.req.socket), Date.now(), x.consumer);
    if (taken instanceof Promise) {
      void taken.then((v) => {
        x.limitVerdict = v;
        resume(x);
      });
      return STOP;
    }
    verdict = taken;
  }
  if (verdict.ok) return GO;
  const retryAfter = Math.max(1, Math.ceil(verdict.retryAfterMs / 1000));
  refuse(
    x,
    429,
    "rate_limited",
    `rate limit reached: retry in ${retryAfter}s`,
    metrics.RATE_LIMITED,
    undefined,
    String(retryAfter),
    rateLimitHeaders(limit, verdict),
  );
  return STOP;
}

function sizeStage(x: Exchange): boolean {
  const max = x.proxy.maxBodyBytes;
  if (x.contentLength <= max) return GO;
  refuse(x, 413, "too_large", `request body over ${max} bytes`, metrics.TOO_LARGE);
  return STOP;
}

function aggregateStage(x: Exchange): boolean {
  const route = x.route as RouteEntry;
  const res = x.res;
  if (res === null) {
    refuse(x, 405, "method_not_allowed", "an aggregation route answers GET and HEAD", metrics.AGGREGATE);
    return STOP;
  }
  const home = route.stats.home;
  const start = x.startedAt;
  res.once("close", () => answered(home, res, metrics.AGGREGATE, start));
  sendAggregate(x.proxy, route, x.req, res, x.headers, x.cors);
  return STOP;
}

function breakerStage(x: Exchange): boolean {
  const route = x.route as RouteEntry;
  const backend = chooseBackend(route, x.req);
  x.backend = backend;
  if (route.split !== null) x.series = route.stats.of(backend);
  // Switched to the fallback (degraded): answered here, but for one probe a second that goes on.
  if (
    backend.degraded &&
    route.fallback !== null &&
    x.res !== null &&
    !backend.probeDegraded(Date.now()) &&
    fellBack(x, "degraded", metrics.FALLBACK_DEGRADED)
  )
    return STOP;
  const breaker = backend.breaker;
  if (breaker === null || breaker.allow(Date.now())) return GO;
  if (fellBack(x, "circuit_open", metrics.FALLBACK_CIRCUIT_OPEN)) return STOP;
  const wait = Math.max(1, Math.ceil(breaker.retryAfterMs(Date.now()) / 1000));
  refuse(
    x,
    503,
    "circuit_open",
    `${backend.name} is failing: its circuit breaker is open`,
    metrics.CIRCUIT_OPEN,
    undefined,
    String(wait),
  );
  return STOP;
}

function shedStage(x: Exchange): boolean {
  const backend = x.backend;
  if (backend === undefined) return GO;
  const proxy = x.proxy;
  if (backend.inflight < backend.concurrency && proxy.inflight < proxy.maxInflight * backend.shedAbove)
    return proxy.admission === null || proxy.admission.admit(x, backend);
  shed(x, backend);
  return STOP;
}

/** Sheds a request: the route's fallback, else 503 overloaded with Retry-After. */
function shed(x: Exchange, backend: Backend): void {
  if (fellBack(x, "shed", metrics.FALLBACK_SHED)) return;
  refuse(
    x,
    503,
    "overloaded",
    `${backend.name} is shedding load: try again shortly`,
    metrics.SHED,
    undefined,
    "1",
  );
}

function endpointStage(x: Exchange): boolean {
  const route = x.route as RouteEntry;
  const backend = x.backend ?? route.backend;
  x.backend = backend;
  const endpoint = pickEndpoint(route, backend, x.req);
  if (endpoint === undefined) {
    // Scaled to zero: the request waits for the instance its arrival asks for (hold.ts).
    const holds = x.proxy.holds;
    if (backend.scalesToZero && backend.endpoints.length === 0 && holds !== null) {
      if (holds.hold(x, backend)) return STOP;
      if (fellBack(x, "unavailable", metrics.FALLBACK_UNAVAILABLE)) return STOP;
      refuse(
        x,
        503,
        "unavailable",
        `${backend.name} is starting and ${holds.maxPerService} requests already wait for it: try again shortly`,
        metrics.UNAVAILABLE,
        undefined,
        "1",
      );
      return STOP;
    }
    if (fellBack(x, "unavailable", metrics.FALLBACK_UNAVAILABLE)) return STOP;
    // Usually brief (a deploy or restart in progress), so clients are told to come back soon.
    refuse(x, 503, "unavailable", unavailableMessage(backend), metrics.UNAVAILABLE, undefined, "1");
    return STOP;
  }
  if (x.res === null) openTunnel(x, endpoint);
  else proxyTo(x, endpoint);
  return STOP;
}

/**
 * Sends a held request on (hold.ts): `backend`, the same service in the
 * table now serving, has a running endpoint. Unless the client left meanwhile.
 */
export function releaseHeld(x: Exchange, backend: Backend): void {
  const res = x.res;
  if (res === null ? x.socket?.destroyed : res.writableEnded || res.destroyed || x.req.socket.destroyed)
    return;
  x.backend = backend;
  endpointStage(x);
}

/** Answers a held request no instance came for in time (hold.ts): the fallback, else 503 with Retry-After. */
export function expireHeld(x: Exchange, why: "timeout" | "not_scaling_to_zero", timeoutMs: number): void {
  const backend = x.backend as Backend;
  if (fellBack(x, "unavailable", metrics.FALLBACK_UNAVAILABLE)) return;
  const message =
    why === "timeout"
      ? `${backend.name} has no instance yet: none started within ${Math.round(timeoutMs / 1000)}s; try again shortly`
      : `${backend.name} no longer scales to zero and has no running instance`;
  refuse(x, 503, "unavailable", message, metrics.UNAVAILABLE, undefined, why === "timeout" ? "5" : "1");
}

/** A request that waited for admission (admission.ts) goes on to its instance, unless the client left. */
export function admittedAfterWait(x: Exchange): void {
  x.stage++;
  resume(x);
}

/** A request admission could not take in time (admission.ts): the fallback, else 503 with Retry-After. */
export function shedAfterWait(x: Exchange): void {
  const res = x.res;
  if (res === null || res.writableEnded || res.destroyed || x.req.socket.destroyed) return;
  shed(x, x.backend as Backend);
}

/** Answers with the route's fallback (HTTP only), when it has one. */
function fellBack(x: Exchange, reason: string, outcome: number): boolean {
  const fallback = (x.route as RouteEntry).fallback;
  const res = x.res;
  if (fallback === null || res === null) return false;
  sendFallback(res, fallback, reason);
  answered(x.series as metrics.Series, res, outcome, x.startedAt);
  return true;
}

/**
 * Refuses the request: `{code, message}` with `status`, counted under
 * `outcome` in `series` (default: the route's); on an upgrade, the same
 * answer as raw bytes on its socket, which is then closed. `headers` is a
 * raw [name, value, …] list.
 */
function refuse(
  x: Exchange,
  status: number,
  code: string,
  message: string,
  outcome: number,
  series: metrics.Series | undefined = x.series,
  retryAfter?: string,
  headers?: string[],
): void {
  const res = x.res;
  if (res === null) {
    const extra = headers ?? [];
    if (retryAfter !== undefined) extra.push("Retry-After", retryAfter);
    writeRawError(x.socket as NonNullable<Exchange["socket"]>, status, code, message, extra);
    return;
  }
  if (headers !== undefined)
    for (let i = 0; i < headers.length; i += 2) res.setHeader(headers[i], headers[i + 1]);
  sendJson(res, status, { code, message }, retryAfter);
  if (series !== undefined) answered(series, res, outcome, x.startedAt);
}

/** The status page on an upgrade's socket (a client that asked for it with an Upgrade header). */
function writeRawJson(x: Exchange, body: unknown): void {
  const socket = x.socket as NonNullable<Exchange["socket"]>;
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

function isLocalHost(host: string): boolean {
  const name = normalizeHost(host);
  return name === "localhost" || name === "127.0.0.1" || name === "[::1]";
}
