/**
 * The config center's API (src/config-center/, docs/config.md).
 *
 *   GET  /apps/:app/config[?version=N]           the effective config, each key's origin, the head
 *   GET  /apps/:app/config/versions              history, oldest first (no contents)
 *   GET  /apps/:app/config/versions/:version     one version with its entries
 *   GET  /apps/:app/config/diff?from=&to=        what changed between two versions
 *   POST /apps/:app/config/versions              a change → the next version (stable, or gray)
 *   POST /apps/:app/config/rollback              {version} → a new version with that one's content
 *   POST /apps/:app/config/promote               the gray version becomes stable
 *   POST /apps/:app/config/abort                 the gray version is withdrawn
 *   GET  /apps/:app/config/status                per instance: target, applied, behind
 *   GET  /config/catalog                         platform and middleware namespaces and their versions
 *   GET  /config/catalog/:layer/:name/versions[/:version]
 *   POST /config/catalog/:layer/:name/versions   a change (platform admin)
 *   POST /config/catalog/:layer/:name/gray {version, tenants?}           the tenants' apps pin it (none: every tenant)
 *   POST /config/catalog/:layer/:name/gray/rollback {version, tenants?}  they pin what they had before
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { invalid, notFound } from "../../common/errors.ts";
import { grayCatalog, rollbackCatalog } from "../../config-center/catalog-gray.ts";
import type { ConfigChange } from "../../config-center/center.ts";
import { ENTRY_NAME_PATTERN, MAX_FILE_BYTES, MAX_VALUE_BYTES } from "../../config-center/entries.ts";
import { diffVersions } from "../../config-center/merge.ts";
import {
  CATALOG_LAYERS,
  CONFIG_FORMATS,
  type ConfigFormat,
  type ConfigVersion,
  type ConfigVersionSummary,
  type GrayTarget,
  type LayerRef,
} from "../../model/config.ts";
import { NAME_PATTERN } from "../../model/manifest.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, Name, OneOf, TenantQuery, tenantOf } from "../schemas.ts";
import { existingApp } from "./existing-app.ts";
import { actorOf } from "./secrets.ts";

const REF_PATTERN = `${NAME_PATTERN.replace(/\$$/, "")}@[1-9][0-9]{0,8}$`;
const LayerRefText = T.String({
  pattern: REF_PATTERN,
  description: "a catalog version: NAME@VERSION, e.g. base@3",
});

const Version = T.Integer({ minimum: 1, description: "a version number" });
const VersionParams = T.Object({ app: AppParams.properties.app, version: Version });
const VersionQuery = T.Object({ tenant: T.Optional(Name), version: T.Optional(Version) });
const DiffQuery = T.Object({
  tenant: T.Optional(Name),
  from: T.Optional(
    T.Integer({ minimum: 0, description: "the older version (default: the one before to; 0: empty)" }),
  ),
  to: T.Optional(T.Integer({ minimum: 1, description: "the newer version (default: the latest)" })),
});
const CatalogParams = T.Object({ layer: OneOf(CATALOG_LAYERS), name: Name });
const CatalogVersionParams = T.Object({ ...CatalogParams.properties, version: Version });

const EntryName = T.String({ pattern: ENTRY_NAME_PATTERN });
const ChangeFields = {
  set: T.Optional(
    T.Record(T.String(), T.String({ maxLength: MAX_VALUE_BYTES }), {
      description: "keys to set: name → value (names: letters, digits, _ . -)",
    }),
  ),
  files: T.Optional(
    T.Record(
      T.String(),
      T.Object(
        {
          format: OneOf(CONFIG_FORMATS, "json, yaml, properties or text: the file must parse as it"),
          content: T.String({ maxLength: MAX_FILE_BYTES }),
        },
        { additionalProperties: false },
      ),
      { description: "whole files to set: name → {format, content}; one that does not parse is refused" },
    ),
  ),
  unset: T.Optional(T.Array(EntryName, { maxItems: 1000, description: "entries to remove" })),
  message: T.Optional(T.String({ maxLength: 500, description: "why: kept with the version" })),
};
const AppChangeBody = T.Object(
  {
    ...ChangeFields,
    platform: T.Optional(
      T.Union([LayerRefText, T.Null()], { description: "the platform version to merge over; null: none" }),
    ),
    middleware: T.Optional(
      T.Array(LayerRefText, { maxItems: 20, description: "middleware versions to merge over, in order" }),
    ),
    gray: T.Optional(
      T.Object(
        {
          share: T.Optional(
            T.Integer({ minimum: 1, maximum: 100, description: "percent of the app's instances" }),
          ),
          instances: T.Optional(T.Array(T.String({ maxLength: 100 }), { maxItems: 1000 })),
          labels: T.Optional(T.Record(T.String({ maxLength: 63 }), T.String({ maxLength: 255 }))),
        },
        { additionalProperties: false, description: "give this version only to these instances first" },
      ),
    ),
  },
  { additionalProperties: false },
);
const CatalogChangeBody = T.Object(ChangeFields, { additionalProperties: false });
const RollbackBody = T.Object(
  { version: Version, message: T.Optional(T.String({ maxLength: 500 })) },
  { additionalProperties: false },
);

interface ChangeBodyShape {
  set?: Record<string, string>;
  files?: Record<string, { format: ConfigFormat; content: string }>;
  unset?: string[];
  message?: string;
  platform?: string | null;
  middleware?: string[];
  gray?: GrayTarget;
}

const parseRef = (text: string): LayerRef => {
  const at = text.lastIndexOf("@");
  return { name: text.slice(0, at), version: Number(text.slice(at + 1)) };
};

/** A version as history lists it: who, when, why, how many entries. */
const summary = (v: ConfigVersion): ConfigVersionSummary => ({
  version: v.version,
  author: v.author,
  message: v.message,
  createdAt: v.createdAt,
  entries: Object.keys(v.entries).length,
  ...(v.uses ? { uses: v.uses } : {}),
  ...(v.rollbackOf !== undefined ? { rollbackOf: v.rollbackOf } : {}),
});

function changeOf(body: ChangeBodyShape): Omit<ConfigChange, "layer" | "namespace" | "author"> {
  const { set, files, unset, message, platform, middleware, gray } = body;
  if (!set && !files && !unset && platform === undefined && !middleware)
    throw invalid("say what changes: set, files, unset, platform or middleware", [
      { field: "set", message: "nothing to change" },
    ]);
  if (gray && gray.share === undefined && !gray.instances?.length && !Object.keys(gray.labels ?? {}).length)
    throw invalid("gray: name a share, instances or labels", [
      { field: "gray", message: "reaches no instance" },
    ]);
  return {
    ...(set ? { set } : {}),
    ...(files ? { files } : {}),
    ...(unset ? { unset } : {}),
    ...(message !== undefined ? { message } : {}),
    ...(platform !== undefined ? { platform: platform === null ? null : parseRef(platform) } : {}),
    ...(middleware ? { middleware: middleware.map(parseRef) } : {}),
    ...(gray ? { gray } : {}),
  };
}

export function configRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { config, store } = deps;
  const ns = (tenant: string, app: string) => `${tenant}/${app}`;

  const diff = async (
    layer: ConfigVersion["layer"],
    namespace: string,
    q: { from?: number; to?: number },
  ) => {
    const all = await config.versions(layer, namespace);
    const to = q.to ?? all.at(-1)?.version;
    if (to === undefined) throw notFound(`${layer} ${namespace} has no config versions yet`);
    const b = all.find((v) => v.version === to);
    if (!b) throw notFound(`${layer} ${namespace} has no config version ${to}`);
    const from = q.from ?? to - 1;
    const a = from === 0 ? { entries: {} } : all.find((v) => v.version === from);
    if (!a) throw notFound(`${layer} ${namespace} has no config version ${from}`);
    return { from, to, changes: diffVersions(a, b) };
  };

  api.get(
    "/apps/:app/config",
    {
      schema: {
        summary:
          "An app's effective config: its keys and files merged over the layers it pins, each with its origin",
        tags: ["config"],
        params: AppParams,
        querystring: VersionQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(store, tenant, app);
      const head = await config.head(tenant, app);
      const version = (req.query as { version?: number }).version;
      const effective = await config.effective(tenant, app, version);
      const v = effective ? await config.version("app", ns(tenant, app), effective.version) : undefined;
      return { head, config: effective ?? null, ...(v?.uses ? { uses: v.uses } : {}) };
    },
  );

  api.get(
    "/apps/:app/config/versions",
    {
      schema: {
        summary: "An app's config history, oldest first",
        tags: ["config"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(store, tenant, app);
      return {
        head: await config.head(tenant, app),
        items: (await config.versions("app", ns(tenant, app))).map(summary),
      };
    },
  );

  api.get(
    "/apps/:app/config/versions/:version",
    {
      schema: {
        summary: "One version of an app's config, with its entries",
        tags: ["config"],
        params: VersionParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app, version } = req.params as { app: string; version: number };
      await existingApp(store, tenant, app);
      return config.mustVersion("app", ns(tenant, app), version);
    },
  );

  api.get(
    "/apps/:app/config/diff",
    {
      schema: {
        summary: "What changed between two versions of an app's config",
        tags: ["config"],
        params: AppParams,
        querystring: DiffQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(store, tenant, app);
      return diff("app", ns(tenant, app), req.query as { from?: number; to?: number });
    },
  );

  api.post(
    "/apps/:app/config/versions",
    {
      schema: {
        summary:
          "Change an app's config: a new version, given to every instance (or, with gray, to some first)",
        description:
          "Files are checked in their format; one that does not parse is refused (400 naming it) and nothing changes. Instances get the new version without a restart (or with a SIGHUP or a restart, as their service's config.onChange says).",
        tags: ["config"],
        params: AppParams,
        querystring: TenantQuery,
        body: AppChangeBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(store, tenant, app, { live: true });
      const author = actorOf(req);
      const { version, head } = await config.change({
        layer: "app",
        namespace: ns(tenant, app),
        author,
        ...changeOf(req.body as ChangeBodyShape),
      });
      await deps.events.record({
        tenant,
        app,
        reason: head?.gray ? "ConfigGray" : "ConfigChanged",
        message: `config v${version.version} by ${author}${head?.gray ? " in gray release" : ""}${version.message ? `: ${version.message}` : ""}`,
      });
      reply.code(201);
      return { version: summary(version), head };
    },
  );

  api.post(
    "/apps/:app/config/rollback",
    {
      schema: {
        summary: "Roll an app's config back: a new version with an older one's content",
        tags: ["config"],
        params: AppParams,
        querystring: TenantQuery,
        body: RollbackBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(store, tenant, app, { live: true });
      const body = req.body as { version: number; message?: string };
      const author = actorOf(req);
      const { version, head } = await config.change({
        layer: "app",
        namespace: ns(tenant, app),
        author,
        rollbackTo: body.version,
        ...(body.message ? { message: body.message } : {}),
      });
      await deps.events.record({
        tenant,
        app,
        reason: "ConfigRolledBack",
        message: `config v${version.version} by ${author}: the content of v${body.version}`,
      });
      reply.code(201);
      return { version: summary(version), head };
    },
  );

  for (const action of ["promote", "abort"] as const) {
    api.post(
      `/apps/:app/config/${action}`,
      {
        schema: {
          summary:
            action === "promote"
              ? "Promote the gray config version: every instance gets it"
              : "Roll back the gray config version: its instances go back to the stable one",
          tags: ["config"],
          params: AppParams,
          querystring: TenantQuery,
        },
      },
      async (req) => {
        const tenant = tenantOf(req);
        const { app } = req.params as { app: string };
        await existingApp(store, tenant, app);
        const author = actorOf(req);
        if (action === "promote") {
          const head = await config.promote(tenant, app);
          await deps.events.record({
            tenant,
            app,
            reason: "ConfigPromoted",
            message: `config v${head.stable} promoted to every instance by ${author}`,
          });
          return { head };
        }
        const { head, aborted } = await config.abortGray(tenant, app);
        await deps.events.record({
          tenant,
          app,
          reason: "ConfigGrayRolledBack",
          message: `gray config v${aborted} rolled back by ${author}: every instance gets v${head.stable}`,
        });
        return { head, aborted };
      },
    );
  }

  api.get(
    "/apps/:app/config/status",
    {
      schema: {
        summary: "Which config version each instance should have, which one it applied, and who is behind",
        tags: ["config"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      await existingApp(store, tenant, app);
      return config.status(tenant, app);
    },
  );

  api.get(
    "/config/catalog",
    {
      schema: {
        summary: "The platform and middleware config namespaces apps choose versions from",
        tags: ["config"],
        querystring: TenantQuery,
      },
    },
    async () => ({
      items: await config.catalog(),
    }),
  );

  api.get(
    "/config/catalog/:layer/:name/versions",
    {
      schema: {
        summary: "A catalog namespace's versions, oldest first",
        tags: ["config"],
        params: CatalogParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { layer, name } = req.params as { layer: "platform" | "middleware"; name: string };
      return { items: (await config.versions(layer, name)).map(summary) };
    },
  );

  api.get(
    "/config/catalog/:layer/:name/versions/:version",
    {
      schema: {
        summary: "One version of a catalog namespace, with its entries",
        tags: ["config"],
        params: CatalogVersionParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { layer, name, version } = req.params as {
        layer: "platform" | "middleware";
        name: string;
        version: number;
      };
      return config.mustVersion(layer, name, version);
    },
  );

  api.get(
    "/config/catalog/:layer/:name/diff",
    {
      schema: {
        summary: "What changed between two versions of a catalog namespace",
        tags: ["config"],
        params: CatalogParams,
        querystring: DiffQuery,
      },
    },
    async (req) => {
      const { layer, name } = req.params as { layer: "platform" | "middleware"; name: string };
      return diff(layer, name, req.query as { from?: number; to?: number });
    },
  );

  api.post(
    "/config/catalog/:layer/:name/versions",
    {
      schema: {
        summary:
          "A new version of a platform or middleware namespace (apps pick it with platform / middleware)",
        tags: ["config"],
        params: CatalogParams,
        body: CatalogChangeBody,
      },
    },
    async (req, reply) => {
      const { layer, name } = req.params as { layer: "platform" | "middleware"; name: string };
      const author = actorOf(req);
      const { version } = await config.change({
        layer,
        namespace: name,
        author,
        ...changeOf(req.body as ChangeBodyShape),
      });
      await deps.events.record({
        reason: "ConfigChanged",
        message: `${layer} config ${name}@${version.version} by ${author}${version.message ? `: ${version.message}` : ""}`,
      });
      reply.code(201);
      return { version: summary(version) };
    },
  );

  const CatalogGrayBody = T.Object(
    {
      version: T.Integer({ minimum: 1 }),
      tenants: T.Optional(
        T.Array(Name, {
          minItems: 1,
          maxItems: 100,
          description: "the tenants whose apps get it; absent: every tenant",
        }),
      ),
    },
    { additionalProperties: false },
  );
  for (const [suffix, run, verb] of [
    ["gray", grayCatalog, "gets"],
    ["gray/rollback", rollbackCatalog, "rolled back from"],
  ] as const) {
    api.post(
      `/config/catalog/:layer/:name/${suffix}`,
      {
        schema: {
          summary:
            suffix === "gray"
              ? "Gray release of a catalog version to tenants: their apps that use the namespace pin it (new app versions)"
              : "Roll a catalog gray release back: the tenants' apps that pin the version pin what they had before",
          tags: ["config"],
          params: CatalogParams,
          body: CatalogGrayBody,
        },
      },
      async (req) => {
        const { layer, name } = req.params as { layer: "platform" | "middleware"; name: string };
        const { version, tenants } = req.body as { version: number; tenants?: string[] };
        const author = actorOf(req);
        const out = await run(config, store, {
          layer,
          name,
          version,
          author,
          ...(tenants ? { tenants } : {}),
        });
        for (const m of out.moved)
          await deps.events.record({
            tenant: m.tenant,
            app: m.app,
            reason: "ConfigCatalogGray",
            message: `${m.app} ${verb} ${layer} ${name}@${version}: now @${m.to} (config v${m.appVersion}) by ${author}`,
          });
        return out;
      },
    );
  }
}
