/**
 * The asset catalog (src/catalog/): apps with their releases, slugs,
 * packages, placements, owners, config versions in effect, declared
 * dependencies beside observed calls; and "which apps ship
 * package X version Y?". Read-only, `apps:read`. A tenant's members see
 * their tenant's apps; a platform admin naming no tenant sees every tenant's.
 *
 *   GET /api/v1/catalog/apps                                  one line per app
 *   GET /api/v1/catalog/apps/:app?window=15m                  one app's entry
 *   GET /api/v1/catalog/apps/:app/releases/:version/packages?against=N  one release's packages (and changes)
 *   GET /api/v1/catalog/packages?name=X&version=Y&all=true    which releases ship X (at Y)
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Catalog } from "../../catalog/catalog.ts";
import { invalid } from "../../common/errors.ts";
import type { ObservedCall } from "../../model/catalog.ts";
import { parseDurationMicros } from "../../observe/traces/span.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, Name, tenantOf } from "../schemas.ts";

/** npm package names: an optional @scope/, then letters, digits, `-._~` (old names may have capitals). */
const PACKAGE_NAME = /^(@[A-Za-z0-9~-][A-Za-z0-9._~-]*\/)?[A-Za-z0-9~-][A-Za-z0-9._~-]*$/;
const DEFAULT_WINDOW = "15m";
/** Longest trace window one catalog read scans. */
const MAX_WINDOW_US = 24 * 3600e6;

const ScopeQuery = T.Object({ tenant: T.Optional(Name) });
const AppQuery = T.Object({
  tenant: T.Optional(Name),
  window: T.Optional(
    T.String({
      maxLength: 20,
      description: "how far back the traces are read for observed calls, e.g. 15m (default), at most 24h",
    }),
  ),
});
const PackagesQuery = T.Object({
  tenant: T.Optional(Name),
  against: T.Optional(
    T.Integer({ minimum: 1, description: "also the package versions added and removed since this release" }),
  ),
});
const ReleaseParams = T.Object({
  app: Name,
  version: T.Integer({ minimum: 1, description: "the release's number (v3 is 3)" }),
});
const SearchQuery = T.Object({
  tenant: T.Optional(Name),
  name: T.String({
    minLength: 1,
    maxLength: 214,
    description: "the npm package's name, e.g. lodash or @scope/pkg",
  }),
  version: T.Optional(
    T.String({
      minLength: 1,
      maxLength: 100,
      description: "a version (4.17.21) or a semver range as npm reads it (^4.17, >=1 <2, 1.x); absent: any",
    }),
  ),
  all: T.Optional(
    T.Boolean({
      description: "search every release kept, not only those in service (serving, or with instances)",
    }),
  ),
});

/**
 * The tenant a catalog read covers: the request's, except a platform admin who
 * names none, who sees every tenant's (undefined).
 */
const scopeOf = (req: {
  herd: { tenant?: string; principal: { admin: boolean } };
  query: unknown;
}): string | undefined =>
  req.herd.principal.admin && (req.query as { tenant?: string }).tenant === undefined
    ? undefined
    : tenantOf(req);

export function catalogRoutes(api: FastifyInstance, deps: ApiDeps): void {
  // Loaded at the first catalog read (with semver): a platform nobody browses does not hold it.
  let opened: Promise<Catalog> | undefined;
  const open = () =>
    (opened ??= import("../../catalog/catalog.ts").then(({ Catalog }) => newCatalog(Catalog, deps)));

  api.get(
    "/catalog/apps",
    {
      schema: {
        summary:
          "The asset catalog: one line per app (serving release, slug, package count, instances, nodes, owners)",
        tags: ["catalog"],
        querystring: ScopeQuery,
      },
    },
    async (req) => ({ items: await (await open()).apps(scopeOf(req)) }),
  );

  api.get(
    "/catalog/apps/:app",
    {
      schema: {
        summary:
          "One app in the asset catalog: releases (slug digests, package counts, who deployed, where each runs), owners, config versions in effect, declared dependencies beside observed calls",
        tags: ["catalog"],
        params: AppParams,
        querystring: AppQuery,
      },
    },
    async (req) => {
      const { window = DEFAULT_WINDOW } = req.query as { window?: string };
      windowMicros(window);
      return (await open()).app(tenantOf(req), (req.params as { app: string }).app, window);
    },
  );

  api.get(
    "/catalog/apps/:app/releases/:version/packages",
    {
      schema: {
        summary: "The npm packages one release's slug ships (recorded when it was built; null: unknown)",
        tags: ["catalog"],
        params: ReleaseParams,
        querystring: PackagesQuery,
      },
    },
    async (req) => {
      const { app, version } = req.params as { app: string; version: number };
      const { against } = req.query as { against?: number };
      return (await open()).releasePackages(tenantOf(req), app, version, against);
    },
  );

  api.get(
    "/catalog/packages",
    {
      schema: {
        summary:
          "Which apps ship package X (version Y, or a semver range)? Releases in service unless all=true",
        tags: ["catalog"],
        querystring: SearchQuery,
      },
    },
    async (req) => {
      const q = req.query as { name: string; version?: string; all?: boolean };
      if (!PACKAGE_NAME.test(q.name)) {
        const message = "must be an npm package name: name or @scope/name (letters, digits, - . _ ~)";
        throw invalid(`querystring.name ${message}, got ${JSON.stringify(q.name).slice(0, 80)}`, [
          { field: "querystring.name", message },
        ]);
      }
      if (q.version !== undefined && !(await import("../../catalog/versions.ts")).isVersionQuery(q.version)) {
        const message = "must be a version (1.2.3) or a semver range (^1.2, ~1.2.3, >=1 <2, 1.x)";
        throw invalid(`querystring.version ${message}, got ${JSON.stringify(q.version).slice(0, 80)}`, [
          { field: "querystring.version", message },
        ]);
      }
      return (await open()).search({
        tenant: scopeOf(req),
        name: q.name,
        version: q.version,
        all: q.all ?? false,
      });
    },
  );
}

/** A window in µs; 400 naming querystring.window unless it is a duration above 0 and at most 24h. */
function windowMicros(window: string): number {
  const us = parseDurationMicros(window);
  if (us === null || us <= 0 || us > MAX_WINDOW_US) {
    const message = "must be a duration above 0 and at most 24h, like 15m or 1h";
    throw invalid(`querystring.window ${message}, got ${JSON.stringify(window).slice(0, 40)}`, [
      { field: "querystring.window", message },
    ]);
  }
  return us;
}

/** The catalog over this control plane's store, artifacts, audit trail and traces. */
function newCatalog(CatalogClass: typeof Catalog, deps: ApiDeps): Catalog {
  return new CatalogClass({
    store: deps.store,
    artifacts: deps.artifacts,
    audit: deps.audit,
    observe: async (tenant, window) => {
      const to = Date.now() * 1000;
      return (await deps.traces.map(to - windowMicros(window), to, tenant)).edges.map(
        (e): ObservedCall => ({
          from: e.from,
          to: e.to,
          calls: e.calls,
          rate: e.rate,
          errors: e.errors,
          errorRate: e.errorRate,
          p99: e.p99,
        }),
      );
    },
  });
}
