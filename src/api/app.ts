/**
 * The control plane's HTTP API: a Fastify app with the permission check of
 * every route (permissions.ts), the audit trail, errors as `{code, message}`,
 * OpenAPI, and the routes under /api/v1 (routes/). daemons/control-plane.ts
 * assembles what the routes use (ApiDeps) and listens.
 */

import type { Duplex } from "node:stream";
import swagger from "@fastify/swagger";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyRequest } from "fastify";
import { type AjvError, ajvField, ajvMessage } from "../common/ajv-messages.ts";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import { nodeHttp } from "../common/node-http.ts";
import { NAME_PATTERN } from "../model/manifest.ts";
import { verbOf } from "./audit.ts";
import type { Authenticator } from "./auth.ts";
import type { ApiDeps } from "./deps.ts";
import { lazyCompilers } from "./lazy-compilers.ts";
import { leaderOnly } from "./leader-only.ts";
import {
  type Decision,
  decide,
  type Permission,
  type Principal,
  ROUTES,
  routeKey,
  TENANT_PERMISSIONS,
  tenantFor,
} from "./permissions.ts";
import { addonRoutes } from "./routes/addons.ts";
import { alertRoutes } from "./routes/alerts.ts";
import { appRoutes } from "./routes/apps.ts";
import { autoscaleRoutes } from "./routes/autoscale.ts";
import { capacityRoutes } from "./routes/capacity.ts";
import { catalogRoutes } from "./routes/catalog.ts";
import { certificateRoutes } from "./routes/certificates.ts";
import { clusterRoutes } from "./routes/cluster.ts";
import { configRoutes } from "./routes/config.ts";
import { CONSOLE_DIR, ConsoleFiles, consoleRoutes } from "./routes/console.ts";
import { consumerRoutes } from "./routes/consumers.ts";
import { dependencyRoutes } from "./routes/dependencies.ts";
import { deployRoutes } from "./routes/deploys.ts";
import { discoveryRoutes } from "./routes/discovery.ts";
import { exportRoutes } from "./routes/export.ts";
import { gitRoutes } from "./routes/git.ts";
import { identityRoutes } from "./routes/identity.ts";
import { instanceRoutes } from "./routes/instances.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { liveConfigRoutes } from "./routes/live-config.ts";
import { loadRoutes } from "./routes/load.ts";
import { logRoutes } from "./routes/logs.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { nodeWaitRoutes } from "./routes/node-wait.ts";
import { pipelineRoutes } from "./routes/pipelines.ts";
import { platformRoutes } from "./routes/platform.ts";
import { previewRoutes } from "./routes/previews.ts";
import { registryRoutes } from "./routes/registry.ts";
import { remediationRoutes } from "./routes/remediation.ts";
import { rolloutRoutes } from "./routes/rollouts.ts";
import { secretRoutes } from "./routes/secrets.ts";
import { setRoutes } from "./routes/sets.ts";
import { tenantRoutes } from "./routes/tenants.ts";
import { traceIngestRoutes, traceRoutes } from "./routes/traces.ts";
import { wakeRoutes } from "./routes/wake.ts";
import { ErrorReply } from "./schemas.ts";

const { STATUS_CODES } = nodeHttp;

/** Machines' protocol writes: telemetry, not changes people make. */
const UNAUDITED: ReadonlySet<Permission> = new Set<Permission>([
  "node:agent",
  "gateway:sync",
  "telemetry:write",
]);

const NAME = new RegExp(NAME_PATTERN);

const messageOf = (payload: string): string | undefined => {
  try {
    return (JSON.parse(payload) as { message?: string }).message;
  } catch {
    return undefined;
  }
};

/** What the permission check found for a request: who, and the tenant it acts in. */
export interface RequestAuth extends Decision {
  principal: Principal;
  /** The tenant a platform-wide request names (`PUT /tenants/:name/quota`): for the audit trail only. */
  named?: string;
}

declare module "fastify" {
  interface FastifyRequest {
    herd: RequestAuth;
  }
}

/**
 * Requests Node's HTTP parser refuses (headers over 16 KiB, malformed lines, a
 * slow sender) get the same JSON `{code, message}` as every other error.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, code, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "too_large", "the request's headers (the URL and query included) are over 16 KiB"]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "invalid", "the request took too long to arrive"]
        : [400, "invalid", `malformed HTTP request (${err.code ?? "unknown"})`];
  const body = JSON.stringify({ code, message });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * Ajv coerces `?limit=1e309` to Infinity and lets it through integer and
 * maximum checks; no query or path number may be infinite.
 */
async function finiteNumbers(req: FastifyRequest): Promise<void> {
  for (const [where, values] of [
    ["querystring", req.query],
    ["params", req.params],
  ] as const) {
    for (const [key, value] of Object.entries((values ?? {}) as Record<string, unknown>)) {
      if ([value].flat().some((v) => typeof v === "number" && !Number.isFinite(v))) {
        throw new HerdError("invalid", `invalid request: ${where}.${key} must be a finite number`, [
          { field: `${where}.${key}`, message: "must be a finite number" },
        ]);
      }
    }
  }
}

/** The Fastify app: auth, errors, OpenAPI and the routes under /api/v1. */
export function buildApi(
  deps: ApiDeps,
  auth: Authenticator,
  logger: Logger,
  https?: { cert: string; key: string },
): FastifyInstance {
  const app = Fastify({
    ...(https ? { https: { cert: https.cert, key: https.key } } : {}),
    logger: false,
    bodyLimit: 1024 * 1024,
    ajv: {
      // strictNumbers: a JSON 1e309 (Infinity) is not a number; see finiteNumbers for query strings.
      customOptions: { allErrors: true, coerceTypes: "array", removeAdditional: false, strictNumbers: true },
    },
    clientErrorHandler: answerClientError,
    // Each route's schemas compiled at its first request, not at start (lazy-compilers.ts).
    schemaController: { compilersFactory: lazyCompilers() },
  });
  app.addContentTypeParser(
    ["application/gzip", "application/x-gzip", "application/octet-stream"],
    (_req, payload, done) => done(null, payload),
  );
  app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "herd API",
        version: deps.version,
        description: "The herd control plane. Every call needs `Authorization: Bearer <token>`.",
      },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  app.addSchema(ErrorReply);

  // Every route declares its permission in permissions.ts; one that does not stops the server here.
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) {
      const m = method === "HEAD" ? "GET" : method;
      if (!(routeKey(m, route.url) in ROUTES)) {
        throw new Error(
          `route ${m} ${route.url} declares no permission: add it to ROUTES in api/permissions.ts`,
        );
      }
    }
  });
  app.decorateRequest("herd", null as unknown as RequestAuth);
  app.addHook("onRequest", async (req) => {
    const url = req.routeOptions.url;
    if (url === undefined) return; // no such route: the 404 handler answers
    const permission = ROUTES[routeKey(req.method === "HEAD" ? "GET" : req.method, url)];
    if (permission === null) return;
    if (permission === undefined)
      throw new HerdError("internal", `route ${req.method} ${url} has no permission`);
    const principal = await auth.check(req.headers.authorization, req.socket.remoteAddress);
    const params = (req.params ?? {}) as { name?: string };
    const query = (req.query ?? {}) as { tenant?: unknown };
    const inPath = url.startsWith("/api/v1/tenants/:name") ? params.name : undefined;
    const named = inPath ?? (typeof query.tenant === "string" ? query.tenant : undefined);
    const node = url.startsWith("/api/v1/nodes/:name") ? params.name : undefined;
    if (named !== undefined && !NAME.test(named)) {
      throw new HerdError(
        "invalid",
        `invalid request: querystring.tenant must be a name (lowercase letters, digits and dashes), got ${JSON.stringify(named).slice(0, 60)}`,
        [{ field: "querystring.tenant", message: "must be a name" }],
      );
    }
    // Set before the decision, so that a refused write is audited with who tried it and where.
    let tenant = named;
    if (tenant === undefined && TENANT_PERMISSIONS.has(permission)) {
      try {
        tenant = tenantFor(principal, undefined);
      } catch {
        // decide() says why
      }
    }
    req.herd = { permission, principal, ...(tenant ? { tenant } : {}), ...(named ? { named } : {}) };
    const decision = decide(principal, permission, { tenant: named, node });
    if (decision.tenant !== undefined && !(await auth.tenantExists(decision.tenant))) {
      // A member never sees this for its own tenants; an admin learns the tenant is missing.
      throw new HerdError("not_found", `no tenant ${decision.tenant} (herd tenants lists them)`);
    }
    req.herd = { ...decision, principal, ...(named && !decision.tenant ? { named } : {}) };
  });
  if (deps.leadership) app.addHook("onRequest", leaderOnly(deps.leadership));
  app.addHook("preHandler", finiteNumbers);
  // Writes are audited before the reply leaves: an acknowledged write is always in the trail.
  app.addHook("onSend", async (req, reply, payload) => {
    const verb = verbOf(req.method);
    const url = req.routeOptions.url;
    if (!verb || url === undefined || !req.herd || UNAUDITED.has(req.herd.permission)) return payload;
    const failed = reply.statusCode >= 400 && typeof payload === "string" ? messageOf(payload) : undefined;
    const app = (req.params as { app?: string } | undefined)?.app;
    deps.audit.append({
      at: new Date().toISOString(),
      actor: req.herd.principal.label,
      token: req.herd.principal.token.id,
      ...(req.herd.tenant || req.herd.named ? { tenant: req.herd.tenant ?? req.herd.named } : {}),
      ...(app ? { app } : {}),
      verb,
      route: routeKey(req.method, url),
      path: req.url.split("?")[0],
      status: reply.statusCode,
      address: req.socket.remoteAddress ?? "unknown",
      ...(failed ? { message: failed } : {}),
    });
    return payload;
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof HerdError) {
      if (err.status >= 500) logger.error("request failed", { url: req.url, err });
      return reply.code(err.status).send(err.toJSON());
    }
    if (err.validation) {
      const where = err.validationContext ?? "body";
      const details = err.validation.map((v) => ({
        field: ajvField(where, v),
        message: ajvMessage(v as AjvError),
      }));
      return reply.code(400).send({
        code: "invalid",
        message: `invalid request: ${details.map((d) => `${d.field} ${d.message}`).join("; ")}`,
        details,
      });
    }
    if (err.statusCode === 413 || err.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      return reply.code(413).send({ code: "too_large", message: "request body too large" });
    }
    if (err.statusCode && err.statusCode < 500) {
      return reply
        .code(err.statusCode)
        .send({ code: err.statusCode === 415 ? "invalid" : "invalid", message: err.message });
    }
    logger.error("request failed", { url: req.url, err });
    return reply.code(500).send({ code: "internal", message: err.message });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ code: "not_found", message: `no route ${req.method} ${req.url.split("?")[0]}` }),
  );

  app.get("/healthz", { schema: { hide: true } }, async () => ({ ok: true }));
  // The API server's own metrics, unauthenticated like /healthz so any Prometheus can scrape it:
  // process figures and request counts only, nothing about tenants' data.
  const self = deps.metrics.self;
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unmatched";
    self.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    self.duration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });
  // Also the fleet (nodes' and instances' figures from the agents' heartbeats) and components in
  // this process (herd up's agent).
  app.get("/metrics", { schema: { hide: true } }, async (_req, reply) => {
    const texts = await Promise.all([
      self.registry.metrics(),
      deps.metrics.fleet.render(),
      ...deps.metrics.alsoExport.map((render) => render()),
    ]);
    return reply
      .type(self.registry.contentType)
      .send(texts.map((t) => (t.endsWith("\n") || t === "" ? t : `${t}\n`)).join(""));
  });
  app.register(
    async (api) => {
      api.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
      appRoutes(api, deps);
      deployRoutes(api, deps);
      gitRoutes(api, deps);
      addonRoutes(api, deps);
      instanceRoutes(api, deps);
      autoscaleRoutes(api, deps);
      exportRoutes(api, deps);
      rolloutRoutes(api, deps);
      setRoutes(api, deps);
      pipelineRoutes(api, deps);
      previewRoutes(api, deps);
      dependencyRoutes(api, deps);
      platformRoutes(api, deps);
      logRoutes(api, deps);
      consumerRoutes(api, deps);
      certificateRoutes(api, deps);
      clusterRoutes(api, deps);
      liveConfigRoutes(api, deps);
      loadRoutes(api, deps);
      traceRoutes(api, deps);
      metricsRoutes(api, deps);
      alertRoutes(api, deps);
      remediationRoutes(api, deps);
      secretRoutes(api, deps);
      configRoutes(api, deps);
      identityRoutes(api, deps);
      tenantRoutes(api, deps);
      capacityRoutes(api, deps);
      catalogRoutes(api, deps);
      jobRoutes(api, deps);
      wakeRoutes(api, deps);
      nodeWaitRoutes(api, deps);
      registryRoutes(api, deps);
      discoveryRoutes(api, deps);
    },
    { prefix: "/api/v1" },
  );
  // The web console (console/dist): its files and its deep links, outside /api/v1.
  consoleRoutes(app, new ConsoleFiles(CONSOLE_DIR));
  // Span ingest has its own plugin: it reads gzip and deflate bodies.
  app.register(async (ingest) => traceIngestRoutes(ingest, deps), { prefix: "/api/v1" });
  return app;
}
