/**
 * herd.yaml's `routes:` entries: their schema and their normalised form
 * (Route in service-spec.ts) that releases store and gateways read.
 */

import { type Static, Type as T } from "@sinclair/typebox";
import { Name } from "./manifest-fields.ts";
import { Seconds, secondsMs } from "./seconds.ts";
import type {
  AggregateSpec,
  AuthSpec,
  BalanceSpec,
  Route,
  RouteTimeouts,
  StickySpec,
} from "./service-spec.ts";

const Host = T.String({
  pattern: "^(\\*\\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
  description: "a host name, optionally *.suffix",
});

const Method = T.Union(
  ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map((m) => T.Literal(m)),
  { description: "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS" },
);

/** What identifies a client for stickiness: its address, a header or a cookie. */
const StickyKey = T.Union([
  T.Literal("ip"),
  T.Object({ header: T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }) }, { additionalProperties: false }),
  T.Object(
    { cookie: T.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$" }) },
    { additionalProperties: false },
  ),
]);
/** How long an aggregation part may take. */
const PartTimeout = Seconds({
  minimum: 0.01,
  maximum: 60,
  description: "how long this part may take (default: the aggregation's timeout)",
});

/** An aggregation: one route answered by calling several services in parallel and merging their JSON. */
const AggregateSchema = T.Object(
  {
    timeout: T.Optional(
      Seconds({ minimum: 0.01, maximum: 60, description: "how long each part may take (default 1s)" }),
    ),
    headers: T.Optional(
      T.Array(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }), {
        maxItems: 32,
        uniqueItems: true,
        description: "client headers sent to every part (default: authorization, cookie)",
      }),
    ),
    parts: T.Record(
      T.String({ pattern: "^[A-Za-z][A-Za-z0-9_-]{0,63}$" }),
      T.Object(
        {
          service: Name,
          path: T.String({
            pattern: "^/[^\\s#]*$",
            maxLength: 1024,
            description: "a path starting with /, may carry a query",
          }),
          query: T.Optional(T.Boolean({ description: "append the client's query string (default false)" })),
          timeout: T.Optional(PartTimeout),
        },
        { additionalProperties: false },
      ),
      {
        minProperties: 1,
        maxProperties: 16,
        additionalProperties: false,
        description: "1 to 16 parts; names are letters, digits, _ and -, starting with a letter",
      },
    ),
  },
  {
    additionalProperties: false,
    description: "answer GET/HEAD with the merged JSON of several services' answers, called in parallel",
  },
);

/** Who may use a route: consumers with an API key, and/or bearers of a JWT (see src/gateway/auth.ts). */
const RouteAuthSchema = T.Object(
  {
    apiKey: T.Optional(
      T.Object(
        {
          header: T.Optional(
            T.String({
              pattern: "^[A-Za-z0-9-]{1,64}$",
              description: "header with the key (default x-api-key)",
            }),
          ),
          query: T.Optional(
            T.String({
              pattern: "^[A-Za-z0-9_.-]{1,64}$",
              description: "also accept the key in this query parameter, e.g. apikey",
            }),
          ),
          hideCredentials: T.Optional(
            T.Boolean({ description: "remove the key (header and query parameter) before forwarding" }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    jwt: T.Optional(
      T.Object(
        {
          jwks: T.Optional(
            T.Union(
              [
                T.Object(
                  { file: T.String({ pattern: "^/", maxLength: 4096, description: "an absolute path" }) },
                  { additionalProperties: false },
                ),
                T.Object(
                  { url: T.String({ pattern: "^https?://[^\\s]+$", maxLength: 2048 }) },
                  { additionalProperties: false },
                ),
              ],
              {
                description:
                  "{ file: /absolute/path.json } or { url: https://issuer/.well-known/jwks.json }: keys of an identity provider (RS256)",
              },
            ),
          ),
          issuer: T.Optional(
            T.String({ minLength: 1, maxLength: 1024, description: "JWKS tokens must have this iss" }),
          ),
          audience: T.Optional(
            T.String({ minLength: 1, maxLength: 1024, description: "tokens must have this aud" }),
          ),
          claim: T.Optional(
            T.String({
              pattern: "^[A-Za-z0-9_.:-]{1,64}$",
              description: "the claim of a JWKS token that names the consumer (default sub)",
            }),
          ),
          hideCredentials: T.Optional(
            T.Boolean({ description: "remove the Authorization header before forwarding" }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: "apiKey and/or jwt: requests need one of their credentials",
  },
);

export const RouteSchema = T.Object(
  {
    host: Host,
    path: T.Optional(T.String({ pattern: "^/", maxLength: 1024, description: "a path starting with /" })),
    match: T.Optional(
      T.Union([T.Literal("prefix"), T.Literal("exact")], {
        description: "prefix (default: the path and everything below it) or exact",
      }),
    ),
    methods: T.Optional(T.Array(Method, { minItems: 1, uniqueItems: true })),
    headers: T.Optional(
      T.Record(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }), T.String({ maxLength: 1024 }), {
        additionalProperties: false,
        description: "header names (letters, digits, -) and the exact values they must have",
      }),
    ),
    rewrite: T.Optional(
      T.String({ pattern: "^/", maxLength: 1024, description: "replaces the matched path prefix, e.g. /" }),
    ),
    priority: T.Optional(
      T.Integer({
        minimum: -1000,
        maximum: 1000,
        description: "higher wins when several routes match (default 0)",
      }),
    ),
    balance: T.Optional(
      T.Union(
        [
          T.Literal("round_robin"),
          T.Literal("least_request"),
          T.Object(
            {
              hash: StickyKey,
            },
            { additionalProperties: false },
          ),
        ],
        {
          description:
            "round_robin (default), least_request (the less busy of two random instances), or { hash: ip | { header: NAME } | { cookie: NAME } } for sticky sessions",
        },
      ),
    ),
    mirror: T.Optional(
      T.Object(
        {
          service: Name,
          percent: T.Optional(
            T.Number({ minimum: 0, maximum: 100, description: "share of requests copied (default 100)" }),
          ),
        },
        {
          additionalProperties: false,
          description:
            "copy requests (without a body) to another service of the app; its answers are dropped",
        },
      ),
    ),
    split: T.Optional(
      T.Object(
        {
          to: T.Array(
            T.Object(
              {
                service: Name,
                weight: T.Number({
                  minimum: 0,
                  maximum: 100,
                  description: "percent of the route's requests",
                }),
              },
              { additionalProperties: false },
            ),
            { minItems: 1, maxItems: 10 },
          ),
          sticky: T.Optional(StickyKey),
        },
        {
          additionalProperties: false,
          description:
            "send a share of this route's requests to other services of the app (the rest stays here)",
        },
      ),
    ),
    cors: T.Optional(
      T.Object(
        {
          origins: T.Array(T.String({ pattern: "^(\\*|https?://[^/\\s]+)$" }), {
            minItems: 1,
            description: "allowed origins (scheme://host[:port]) or *",
          }),
          methods: T.Optional(T.Array(Method, { minItems: 1, uniqueItems: true })),
          headers: T.Optional(T.Array(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }))),
          exposeHeaders: T.Optional(T.Array(T.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }))),
          credentials: T.Optional(T.Boolean()),
          maxAge: T.Optional(
            Seconds({
              minimum: 0,
              maximum: 86400,
              whole: true,
              description: "how long a browser may cache a preflight's answer (default 10m)",
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    fallback: T.Optional(
      T.Object(
        {
          status: T.Optional(T.Integer({ minimum: 200, maximum: 599, description: "default 200" })),
          body: T.String({ maxLength: 65536 }),
          contentType: T.Optional(
            T.String({ maxLength: 200, description: "default text/plain; charset=utf-8" }),
          ),
        },
        {
          additionalProperties: false,
          description:
            "what to answer when the service cannot: no instance running, breaker open, unreachable or too slow",
        },
      ),
    ),
    aggregate: T.Optional(AggregateSchema),
    timeouts: T.Optional(
      T.Object(
        {
          connect: T.Optional(
            Seconds({
              minimum: 0.01,
              maximum: 300,
              description: "how long opening a connection to an instance may take (default 5s)",
            }),
          ),
          request: T.Optional(
            Seconds({
              minimum: 0.01,
              maximum: 86400,
              description: "the time from sending the request to the end of the answer (default: none)",
            }),
          ),
          idle: T.Optional(
            Seconds({
              minimum: 0.01,
              maximum: 86400,
              description: "how long an instance may stay silent, before or within its answer (default 60s)",
            }),
          ),
        },
        { additionalProperties: false, description: "how long the gateway waits for the service" },
      ),
    ),
    rateLimit: T.Optional(
      T.Object(
        {
          rate: T.Number({ exclusiveMinimum: 0, maximum: 1_000_000, description: "requests per second" }),
          burst: T.Optional(
            T.Integer({ minimum: 1, maximum: 10_000_000, description: "default: one second's worth" }),
          ),
          per: T.Optional(
            T.Union([T.Literal("route"), T.Literal("ip"), T.Literal("consumer")], {
              description:
                "route (one bucket for everyone, default), ip (one per client address) or consumer (one per authenticated consumer; per ip without one)",
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    auth: T.Optional(RouteAuthSchema),
  },
  { additionalProperties: false },
);

export type RouteManifest = Static<typeof RouteSchema>;

/** Client headers an aggregation sends to its parts unless its `headers` says otherwise. */
export const DEFAULT_AGGREGATE_HEADERS = ["authorization", "cookie"];

/**
 * Headers an aggregation may not forward: the gateway sets them itself per
 * part (framing, tracing, X-Forwarded-*), they describe one connection, or
 * they would let a part answer in a form the gateway cannot merge.
 */
export const UNFORWARDABLE = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-connection",
  "accept-encoding",
  "traceparent",
  "tracestate",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
]);

/** One route as a release stores it: defaults filled in. */
export function normalizeRoute(r: RouteManifest): Route {
  return {
    host: r.host,
    path: r.path ?? "/",
    ...(r.match ? { match: r.match } : {}),
    ...(r.methods ? { methods: r.methods } : {}),
    ...(r.headers
      ? { headers: Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v])) }
      : {}),
    ...(r.rewrite ? { rewrite: r.rewrite } : {}),
    ...(r.priority ? { priority: r.priority } : {}),
    ...(r.mirror ? { mirror: { service: r.mirror.service, percent: r.mirror.percent ?? 100 } } : {}),
    ...(r.split
      ? {
          split: {
            to: r.split.to.map((t) => ({ service: t.service, weight: t.weight })),
            ...(r.split.sticky ? { sticky: stickySpec(r.split.sticky) } : {}),
          },
        }
      : {}),
    ...(r.cors
      ? {
          cors: {
            origins: r.cors.origins,
            methods: r.cors.methods ?? ["GET", "HEAD", "POST"],
            headers: r.cors.headers ?? [],
            exposeHeaders: r.cors.exposeHeaders ?? [],
            credentials: r.cors.credentials ?? false,
            // Access-Control-Max-Age is whole seconds: the schema takes only those (10m, 600; not 1500ms).
            maxAge: secondsMs(r.cors.maxAge ?? 600) / 1000,
          },
        }
      : {}),
    ...(r.fallback
      ? {
          fallback: {
            status: r.fallback.status ?? 200,
            body: r.fallback.body,
            contentType: r.fallback.contentType ?? "text/plain; charset=utf-8",
          },
        }
      : {}),
    ...(r.aggregate ? { aggregate: aggregateSpec(r.aggregate) } : {}),
    ...(r.balance && r.balance !== "round_robin" ? { balance: balanceSpec(r.balance) } : {}),
    ...(r.timeouts ? { timeouts: routeTimeouts(r.timeouts) } : {}),
    ...(r.rateLimit
      ? {
          rateLimit: {
            rate: r.rateLimit.rate,
            burst: r.rateLimit.burst ?? Math.max(1, Math.ceil(r.rateLimit.rate)),
            per: r.rateLimit.per ?? "route",
          },
        }
      : {}),
    ...(r.auth ? { auth: authSpec(r.auth) } : {}),
  };
}

function authSpec(a: Static<typeof RouteAuthSchema>): AuthSpec {
  return {
    ...(a.apiKey
      ? {
          apiKey: {
            header: (a.apiKey.header ?? "x-api-key").toLowerCase(),
            ...(a.apiKey.query ? { query: a.apiKey.query } : {}),
            hideCredentials: a.apiKey.hideCredentials ?? false,
          },
        }
      : {}),
    ...(a.jwt
      ? {
          jwt: {
            ...(a.jwt.jwks ? { jwks: a.jwt.jwks } : {}),
            ...(a.jwt.issuer ? { issuer: a.jwt.issuer } : {}),
            ...(a.jwt.audience ? { audience: a.jwt.audience } : {}),
            claim: a.jwt.claim ?? "sub",
            hideCredentials: a.jwt.hideCredentials ?? false,
          },
        }
      : {}),
  };
}

function routeTimeouts(t: NonNullable<RouteManifest["timeouts"]>): RouteTimeouts {
  return {
    ...(t.connect !== undefined ? { connectMs: secondsMs(t.connect) } : {}),
    ...(t.request !== undefined ? { requestMs: secondsMs(t.request) } : {}),
    ...(t.idle !== undefined ? { idleMs: secondsMs(t.idle) } : {}),
  };
}

function balanceSpec(b: RouteManifest["balance"]): BalanceSpec {
  if (b === undefined || b === "round_robin") return { kind: "round_robin" };
  if (b === "least_request") return { kind: "least_request" };
  return { kind: "hash", ...stickySpec(b.hash) };
}

function stickySpec(key: Static<typeof StickyKey>): StickySpec {
  if (key === "ip") return { on: "ip" };
  return "header" in key
    ? { on: "header", name: key.header.toLowerCase() }
    : { on: "cookie", name: key.cookie };
}
function aggregateSpec(a: NonNullable<RouteManifest["aggregate"]>): AggregateSpec {
  const timeout = a.timeout ?? 1;
  return {
    headers: (a.headers ?? DEFAULT_AGGREGATE_HEADERS).map((h) => h.toLowerCase()),
    parts: Object.entries(a.parts).map(([name, p]) => ({
      name,
      service: p.service,
      path: p.path,
      query: p.query ?? false,
      timeoutMs: secondsMs(p.timeout ?? timeout),
    })),
  };
}
