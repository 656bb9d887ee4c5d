/**
 * A route's chain of stages, compiled when its table is built: the stages
 * its request passes, in order, as small integers (chain.ts runs them). A
 * route without CORS, auth or a rate limit has no such stage at all, so
 * nothing about them is looked at per request.
 *
 *   route ─► CORS ─► auth ─► limit ─► size ─┬─► breaker ─► shed ─► endpoint   (proxied, or a WebSocket tunnel)
 *                                           └─► aggregate                       (aggregation routes)
 *
 * Why this order: a CORS preflight carries no credentials, so it is answered
 * before auth asks for them; auth comes before the rate limit because a limit
 * `per: consumer` keys on the consumer auth found; the size check is cheap and
 * refuses before any service is involved; the breaker and shedding protect
 * the service a request was split to, so they follow the choice of service;
 * the endpoint (an instance) is picked last, when the request is admitted.
 * HTTP requests and WebSocket upgrades run the same chain.
 */

/** Answers CORS preflights; a WebSocket handshake from an origin the route does not allow is refused. */
export const CORS = 0;
/** Checks the route's credentials (auth.ts); may wait for a JWKS fetch. */
export const AUTH = 1;
/** Takes a token of the route's rate limit; may wait for a worker's lease. */
export const LIMIT = 2;
/** Refuses a body over the proxy's limit by its Content-Length. */
export const SIZE = 3;
/** Answers from several services (aggregate.ts); the last stage of an aggregation route. */
export const AGGREGATE = 4;
/** Chooses the service (a split) and asks its circuit breaker. */
export const BREAKER = 5;
/** Sheds load by the service's concurrency and the process's in-flight share for its criticality. */
export const SHED = 6;
/** Picks an instance and proxies to it (or opens a tunnel to it). */
export const ENDPOINT = 7;

/** Stage names by number, for messages and tests. */
export const STAGE_NAMES = [
  "cors",
  "auth",
  "limit",
  "size",
  "aggregate",
  "breaker",
  "shed",
  "endpoint",
] as const;

/** What decides a route's stages. */
export interface StagedRoute {
  readonly cors: unknown;
  readonly auth: unknown;
  readonly limit: unknown;
  readonly aggregate: unknown;
}

/** The route's chain: the stages it needs, in the order above. */
export function compileStages(route: StagedRoute): Uint8Array {
  const stages: number[] = [];
  if (route.cors !== null) stages.push(CORS);
  if (route.auth !== null) stages.push(AUTH);
  if (route.limit !== null) stages.push(LIMIT);
  stages.push(SIZE);
  if (route.aggregate !== null) stages.push(AGGREGATE);
  else stages.push(BREAKER, SHED, ENDPOINT);
  return Uint8Array.from(stages);
}
