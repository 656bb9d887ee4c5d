/**
 * An app's secrets: names, versions and who changed them go out; values only
 * come in (PUT) and never leave through the API. A change to a secret the
 * running release uses makes a new release that rolls out.
 *
 *   GET    /apps/:app/secrets          names, versions, who changed them
 *   PUT    /apps/:app/secrets/:name    {value} → new version (+ the deploy it started)
 *   DELETE /apps/:app/secrets/:name    409 while the app's release uses it
 *   POST   /secrets/rotate-key         re-encrypt everything with a new key (platform admin)
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { conflict, notFound } from "../../common/errors.ts";
import { SECRET_NAME_PATTERN } from "../../model/manifest.ts";
import { type App, appKey } from "../../model/objects.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, TenantQuery, tenantOf } from "../schemas.ts";

const SecretParams = T.Object({
  app: AppParams.properties.app,
  name: T.String({
    pattern: SECRET_NAME_PATTERN,
    description: "letters, digits, _ and -, starting with a letter; at most 64",
  }),
});

/** Largest secret value: 64 KiB (an env variable, a key file's content). */
const MAX_VALUE = 65536;

const SetSecretBody = T.Object(
  {
    value: T.String({
      minLength: 1,
      maxLength: MAX_VALUE,
      // A NUL cannot be in a process's environment.
      pattern: "^[^\\u0000]*$",
      description: "the secret's value: 1 to 65536 characters, no NUL",
    }),
  },
  { additionalProperties: false },
);

/** Who made the request, as secrets record it: the principal's label (`user alice`, `gateway`…). */
export const actorOf = (req: FastifyRequest): string => req.herd?.principal.label ?? "unknown";

export function secretRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { secrets, store, controllers } = deps;

  const liveApp = async (tenant: string, app: string) => {
    const o = await store.get<App>("app", appKey(tenant, app));
    if (o?.value.destroying) throw conflict(`app ${app} is being destroyed`);
    return o;
  };

  api.get(
    "/apps/:app/secrets",
    {
      schema: {
        summary: "An app's secrets: names, versions and who changed them (never the values)",
        tags: ["secrets"],
        params: AppParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { app } = req.params as { app: string };
      return { items: await secrets.list(tenantOf(req), app) };
    },
  );

  api.put(
    "/apps/:app/secrets/:name",
    {
      schema: {
        summary: "Set a secret (a new version); a release that uses it rolls out again with it",
        description:
          "The value is encrypted at rest and never returned. The app need not exist yet: a first deploy finds it. When the app's release refers to the secret, the reply carries the deploy that rolls the new version out.",
        tags: ["secrets"],
        params: SecretParams,
        querystring: TenantQuery,
        body: SetSecretBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { app, name } = req.params as { app: string; name: string };
      await liveApp(tenant, app);
      const secret = await secrets.set(
        tenant,
        app,
        name,
        (req.body as { value: string }).value,
        actorOf(req),
      );
      await deps.events.record({
        tenant,
        app,
        reason: "SecretSet",
        message: `secret ${name} set to version ${secret.version} by ${secret.updatedBy}`,
      });
      const deploy = await controllers.deploys.secretChanged(tenant, app, name, actorOf(req));
      reply.code(secret.version === 1 ? 201 : 200);
      return { secret, ...(deploy ? { deploy } : {}) };
    },
  );

  api.delete(
    "/apps/:app/secrets/:name",
    {
      schema: {
        summary: "Unset a secret (409 while the app's release gives it to a service)",
        tags: ["secrets"],
        params: SecretParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app, name } = req.params as { app: string; name: string };
      const used = await controllers.deploys.secretInUse(tenant, app, name);
      if (used) {
        throw conflict(`secret ${name} is in use: ${used}; remove it from herd.yaml and deploy first`);
      }
      const deleted = await secrets.unset(tenant, app, name, actorOf(req));
      if (!deleted) throw notFound(`app ${app} has no secret ${name} (herd secrets list --app ${app})`);
      await deps.events.record({
        tenant,
        app,
        reason: "SecretUnset",
        message: `secret ${name} unset by ${actorOf(req)}`,
      });
      return { deleted };
    },
  );

  api.post(
    "/secrets/rotate-key",
    {
      schema: {
        summary:
          "Rotate the secrets key: every secret of every tenant re-encrypted with a new key (platform admin)",
        description:
          "Crash-safe: the old key stays in the key file until every secret uses the new one; an interrupted rotation is finished by the next start.",
        tags: ["secrets"],
      },
    },
    async (req) => {
      const result = await secrets.rotateKey();
      await deps.events.record({
        reason: "SecretKeyRotated",
        message: `secrets key rotated to ${result.keyId} by ${actorOf(req)}: ${result.reencrypted} versions of ${result.secrets} secrets re-encrypted`,
      });
      return result;
    },
  );
}
