/**
 * Consumers (like Kong's): the clients of a tenant's routes, and their
 * credentials. API keys are generated here and shown once; only their sha256
 * is stored. JWT credentials bind a key (the tokens' `iss`) to an HS256
 * secret or an RS256 public key. Gateways follow the `consumer` kind through
 * the watch; HS256 secrets live encrypted in the secret store (the consumer
 * keeps a reference), are never shown again by these routes, and reach
 * gateways only through GET /gateways/jwt-secrets.
 */

import { createPublicKey, randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { conflict, invalid, notFound } from "../../common/errors.ts";
import { newId } from "../../common/ids.ts";
import { type Consumer, consumerKey, type JwtCredential } from "../../model/objects.ts";
import { consumerScope } from "../../secrets/secret-store.ts";
import type { StoredObject } from "../../store/store.ts";
import { hashToken } from "../auth.ts";
import type { ApiDeps } from "../deps.ts";
import {
  ConsumerParams,
  CreateConsumerBody,
  CredentialParams,
  JwtCredentialBody,
  TenantQuery,
  tenantOf,
} from "../schemas.ts";
import { actorOf } from "./secrets.ts";

/** A consumer as the API shows it: no key hashes, no secrets. */
export function consumerView(c: Consumer) {
  return {
    tenant: c.tenant,
    name: c.name,
    createdAt: c.createdAt,
    keys: c.keys.map((k) => ({ id: k.id, hint: `${k.hint}…`, createdAt: k.createdAt })),
    jwt: c.jwt.map((j) => ({
      id: j.id,
      key: j.key,
      algorithm: j.algorithm,
      ...(j.publicKey ? { publicKey: j.publicKey } : {}),
      createdAt: j.createdAt,
    })),
  };
}

export function consumerRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store, secrets } = deps;

  const getConsumer = async (tenant: string, name: string): Promise<StoredObject<Consumer>> => {
    const o = await store.get<Consumer>("consumer", consumerKey(tenant, name));
    if (!o) throw notFound(`consumer ${name} does not exist (herd consumers lists them)`);
    return o;
  };

  /** Read, change, write with the revision read; a concurrent change makes it read again. */
  const update = async (
    tenant: string,
    name: string,
    change: (c: Consumer) => Consumer,
  ): Promise<Consumer> => {
    for (let attempt = 1; ; attempt++) {
      const o = await getConsumer(tenant, name);
      const next = change(o.value);
      try {
        await store.put("consumer", o.key, next, { expectRevision: o.revision });
        return next;
      } catch (err) {
        if ((err as { code?: string }).code !== "conflict" || attempt >= 5) throw err;
      }
    }
  };

  api.get(
    "/consumers",
    { schema: { summary: "List consumers", tags: ["consumers"], querystring: TenantQuery } },
    async (req) => {
      const tenant = tenantOf(req);
      const items = (await store.list<Consumer>("consumer", { prefix: `${tenant}/` })).items;
      return { items: items.map((o) => consumerView(o.value)) };
    },
  );

  api.post(
    "/consumers",
    {
      schema: {
        summary: "Create a consumer",
        tags: ["consumers"],
        querystring: TenantQuery,
        body: CreateConsumerBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { name } = req.body as { name: string };
      const consumer: Consumer = { tenant, name, createdAt: new Date().toISOString(), keys: [], jwt: [] };
      try {
        await store.put("consumer", consumerKey(tenant, name), consumer, { expectRevision: 0 });
      } catch (err) {
        if ((err as { code?: string }).code === "conflict") throw conflict(`consumer ${name} already exists`);
        throw err;
      }
      reply.code(201);
      return consumerView(consumer);
    },
  );

  api.get(
    "/consumers/:name",
    {
      schema: {
        summary: "One consumer and its credentials (no secrets)",
        tags: ["consumers"],
        params: ConsumerParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      return consumerView((await getConsumer(tenantOf(req), name)).value);
    },
  );

  api.delete(
    "/consumers/:name",
    {
      schema: {
        summary: "Delete a consumer; its credentials stop working",
        tags: ["consumers"],
        params: ConsumerParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      const tenant = tenantOf(req);
      const o = await getConsumer(tenant, name);
      await store.delete("consumer", o.key);
      await secrets.removeScope(tenant, consumerScope(name));
      return consumerView(o.value);
    },
  );

  api.post(
    "/consumers/:name/keys",
    {
      schema: {
        summary: "Add an API key; the reply is the only time the key is shown",
        tags: ["consumers"],
        params: ConsumerParams,
        querystring: TenantQuery,
      },
    },
    async (req, reply) => {
      const { name } = req.params as { name: string };
      const key = `hk_${randomBytes(24).toString("base64url")}`;
      const credential = {
        id: newId(8),
        hash: hashToken(key),
        hint: key.slice(0, 7),
        createdAt: new Date().toISOString(),
      };
      await update(tenantOf(req), name, (c) => ({ ...c, keys: [...c.keys, credential] }));
      reply.code(201);
      return { consumer: name, id: credential.id, key, createdAt: credential.createdAt };
    },
  );

  api.delete(
    "/consumers/:name/keys/:id",
    {
      schema: {
        summary: "Remove an API key",
        tags: ["consumers"],
        params: CredentialParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { name, id } = req.params as { name: string; id: string };
      const next = await update(tenantOf(req), name, (c) => {
        if (!c.keys.some((k) => k.id === id)) throw notFound(`consumer ${name} has no API key ${id}`);
        return { ...c, keys: c.keys.filter((k) => k.id !== id) };
      });
      return consumerView(next);
    },
  );

  api.post(
    "/consumers/:name/jwt",
    {
      schema: {
        summary:
          "Add a JWT credential: tokens whose iss is its key are checked with its secret or public key",
        description:
          "HS256 without a secret gets a generated one, shown only in this reply. RS256 needs publicKey (PEM).",
        tags: ["consumers"],
        params: ConsumerParams,
        querystring: TenantQuery,
        body: JwtCredentialBody,
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req);
      const { name } = req.params as { name: string };
      const body = req.body as {
        key?: string;
        algorithm?: "HS256" | "RS256";
        secret?: string;
        publicKey?: string;
      };
      const { secret, ...credential } = jwtCredential(body);
      const generatedSecret = body.algorithm !== "RS256" && body.secret === undefined ? secret : undefined;
      // A key names one credential in the tenant, or the gateway could not tell whose token it is.
      const others = (await store.list<Consumer>("consumer", { prefix: `${tenant}/` })).items;
      const owner = others.find((o) => o.value.jwt.some((j) => j.key === credential.key));
      if (owner)
        throw conflict(`JWT credential key ${credential.key} is taken by consumer ${owner.value.name}`);
      await getConsumer(tenant, name);
      // The secret goes to the secret store first; the consumer keeps only where it is.
      if (secret !== undefined) {
        const info = await secrets.set(tenant, consumerScope(name), credential.id, secret, actorOf(req));
        credential.secretRef = { secret: credential.id, version: info.version };
      }
      try {
        await update(tenant, name, (c) => ({ ...c, jwt: [...c.jwt, credential] }));
      } catch (err) {
        if (secret !== undefined)
          await secrets.unset(tenant, consumerScope(name), credential.id, actorOf(req));
        throw err;
      }
      reply.code(201);
      return {
        consumer: name,
        id: credential.id,
        key: credential.key,
        algorithm: credential.algorithm,
        ...(generatedSecret ? { secret: generatedSecret } : {}),
        createdAt: credential.createdAt,
      };
    },
  );

  api.delete(
    "/consumers/:name/jwt/:id",
    {
      schema: {
        summary: "Remove a JWT credential",
        tags: ["consumers"],
        params: CredentialParams,
        querystring: TenantQuery,
      },
    },
    async (req) => {
      const { name, id } = req.params as { name: string; id: string };
      const tenant = tenantOf(req);
      const next = await update(tenant, name, (c) => {
        if (!c.jwt.some((j) => j.id === id)) throw notFound(`consumer ${name} has no JWT credential ${id}`);
        return { ...c, jwt: c.jwt.filter((j) => j.id !== id) };
      });
      await secrets.unset(tenant, consumerScope(name), id, actorOf(req));
      return consumerView(next);
    },
  );

  api.get(
    "/gateways/jwt-secrets",
    {
      schema: {
        summary: "Every consumer's HS256 secret, decrypted: for gateways checking JWT signatures",
        description:
          "Gateways call this when the consumers they watch have HS256 credentials. Only gateway and platform-admin credentials may call it: it is the one read of secret values.",
        tags: ["consumers", "gateways"],
      },
    },
    async () => {
      const items: { tenant: string; consumer: string; id: string; secret: string }[] = [];
      for (const o of (await store.list<Consumer>("consumer")).items) {
        const c = o.value;
        for (const j of c.jwt) {
          if (!j.secretRef) continue;
          const secret = await secrets.value(
            c.tenant,
            consumerScope(c.name),
            j.secretRef.secret,
            j.secretRef.version,
          );
          items.push({ tenant: c.tenant, consumer: c.name, id: j.id, secret });
        }
      }
      return { items };
    },
  );
}

/** A JWT credential from the request body; the checks the schema cannot make name the field. */
function jwtCredential(body: {
  key?: string;
  algorithm?: "HS256" | "RS256";
  secret?: string;
  publicKey?: string;
}): JwtCredential {
  const algorithm = body.algorithm ?? "HS256";
  const base = { id: newId(8), key: body.key ?? newId(24), algorithm, createdAt: new Date().toISOString() };
  if (algorithm === "HS256") {
    if (body.publicKey !== undefined) {
      throw invalid("HS256 takes a secret, not a public key", [
        { field: "body.publicKey", message: "only for algorithm RS256" },
      ]);
    }
    return { ...base, secret: body.secret ?? randomBytes(32).toString("base64url") };
  }
  if (body.secret !== undefined) {
    throw invalid("RS256 takes a public key, not a secret", [
      { field: "body.secret", message: "only for algorithm HS256" },
    ]);
  }
  if (body.publicKey === undefined) {
    throw invalid("RS256 needs the public key", [{ field: "body.publicKey", message: "required for RS256" }]);
  }
  let type: string | undefined;
  try {
    type = createPublicKey(body.publicKey).asymmetricKeyType;
  } catch {
    throw invalid("publicKey is not a PEM public key", [
      { field: "body.publicKey", message: "not a PEM public key (-----BEGIN PUBLIC KEY-----…)" },
    ]);
  }
  if (type !== "rsa") {
    throw invalid(`publicKey is an ${type} key`, [
      { field: "body.publicKey", message: `an RSA key is needed, not ${type}` },
    ]);
  }
  return { ...base, publicKey: body.publicKey };
}
