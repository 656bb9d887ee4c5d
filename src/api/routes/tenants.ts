/**
 * Tenants: create and list them, their quota and domains (platform admins),
 * their members and service accounts (tenant owners), and their audit trail.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, HerdError, notFound } from "../../common/errors.ts";
import { unitsInUse } from "../../controllers/quota.ts";
import { underDomain } from "../../controllers/route-owners.ts";
import { type Member, ROLES, type Role, type User } from "../../model/identity.ts";
import type { Tenant, TenantLimits } from "../../model/objects.ts";
import { updateObject } from "../../store/store.ts";
import type { AuditQuery } from "../audit.ts";
import type { ApiDeps } from "../deps.ts";
import { Name, OneOf } from "../schemas.ts";
import { revokeAll } from "./identity.ts";

const TenantParams = T.Object({ name: Name });
const MemberParams = T.Object({ name: Name, user: Name });
const QuotaBody = T.Object(
  {
    // One type list, not a union: Ajv's coercion would turn 0 into null inside an anyOf.
    units: T.Unsafe<number | null>({
      type: ["number", "null"],
      minimum: 0,
      maximum: 1_000_000,
      description: "most resource units the tenant's services may hold; null removes the limit",
    }),
  },
  { additionalProperties: false },
);
const Domain = T.String({
  pattern: "^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$",
  description: "a DNS name such as shop.example.com (covers its subdomains)",
});
const CreateTenantBody = T.Object(
  {
    name: Name,
    quota: T.Optional(
      T.Object({ units: T.Number({ minimum: 0, maximum: 1_000_000 }) }, { additionalProperties: false }),
    ),
    domains: T.Optional(T.Array(Domain, { maxItems: 100 })),
  },
  { additionalProperties: false },
);
const LimitsBody = T.Object(
  {
    uploadBytes: T.Optional(
      T.Integer({ minimum: 1024, maximum: 64 * 1024 ** 3, description: "largest source upload" }),
    ),
    unpackBytes: T.Optional(
      T.Integer({ minimum: 1024, maximum: 256 * 1024 ** 3, description: "most bytes a source unpacks to" }),
    ),
    unpackEntries: T.Optional(
      T.Integer({ minimum: 1, maximum: 10_000_000, description: "most files in a source" }),
    ),
  },
  { additionalProperties: false },
);
const ImageUserBody = T.Object(
  {
    allowed: T.Boolean({
      description:
        "true: its container services may run as their image's own user (user: image; root when the image names none)",
    }),
  },
  { additionalProperties: false },
);
const DomainsBody = T.Object(
  { domains: T.Array(Domain, { maxItems: 100 }) },
  { additionalProperties: false },
);
const RoleBody = T.Object({ role: OneOf(ROLES) }, { additionalProperties: false });
const ServiceAccountBody = T.Object({ name: Name, role: OneOf(ROLES) }, { additionalProperties: false });
const AuditQueryS = T.Object({
  tenant: T.Optional(Name),
  actor: T.Optional(T.String({ maxLength: 200 })),
  app: T.Optional(Name),
  verb: T.Optional(OneOf(["create", "update", "delete"])),
  since: T.Optional(T.String({ format: "date-time" })),
  until: T.Optional(T.String({ format: "date-time" })),
  limit: T.Optional(T.Integer({ minimum: 1, maximum: 10_000 })),
});

export function tenantRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;

  const tenantView = async (t: Tenant) => ({
    ...t,
    usage: { units: await unitsInUse(store, t.name, deps.settings.unit) },
    unit: deps.settings.unit,
  });

  /** Domains already given to another tenant that overlap these. */
  const checkDomains = async (tenant: string, domains: string[]) => {
    for (const o of (await store.list<Tenant>("tenant")).items) {
      if (o.value.name === tenant) continue;
      for (const mine of domains) {
        const theirs = (o.value.domains ?? []).find((d) => underDomain(mine, d) || underDomain(d, mine));
        if (theirs)
          throw conflict(`domain ${mine} overlaps ${theirs}, which belongs to tenant ${o.value.name}`);
      }
    }
  };

  /** Read-modify-write of a tenant with optimistic concurrency. */
  const updateTenant = async (
    name: string,
    change: (t: Tenant) => Tenant,
    create = false,
  ): Promise<Tenant> => {
    const written = await updateObject<Tenant>(store, "tenant", name, (o) => {
      if (!o && !create) throw notFound(`no tenant ${name}`);
      return change(o?.value ?? { name, createdAt: new Date().toISOString() });
    });
    return written!.value;
  };

  api.get(
    "/tenants",
    { schema: { summary: "Tenants: all (platform admins) or yours", tags: ["tenants"] } },
    async (req) => {
      const p = req.herd.principal;
      const all = (await store.list<Tenant>("tenant")).items.map((o) => o.value);
      const items = all
        .filter((t) => p.admin || p.roles.has(t.name))
        .map((t) => ({ ...t, ...(p.admin ? {} : { role: p.roles.get(t.name) }) }));
      return { items };
    },
  );

  api.post(
    "/tenants",
    { schema: { summary: "Create a tenant", tags: ["tenants"], body: CreateTenantBody } },
    async (req, reply) => {
      const body = req.body as { name: string; quota?: { units: number }; domains?: string[] };
      if (body.domains) await checkDomains(body.name, body.domains);
      const tenant: Tenant = {
        name: body.name,
        createdAt: new Date().toISOString(),
        ...(body.quota ? { quota: body.quota } : {}),
        ...(body.domains?.length ? { domains: [...new Set(body.domains)].sort() } : {}),
      };
      try {
        await store.put("tenant", body.name, tenant, { expectRevision: 0 });
      } catch (err) {
        if ((err as { code?: string }).code === "conflict")
          throw conflict(`tenant ${body.name} already exists`);
        throw err;
      }
      reply.code(201);
      return tenant;
    },
  );

  api.get(
    "/tenants/:name",
    {
      schema: {
        summary: "A tenant, its quota, domains and the units in use",
        tags: ["tenants"],
        params: TenantParams,
      },
    },
    async (req) => {
      const o = await store.get<Tenant>("tenant", (req.params as { name: string }).name);
      if (!o) throw notFound(`no tenant ${(req.params as { name: string }).name}`);
      return tenantView(o.value);
    },
  );

  api.put(
    "/tenants/:name/quota",
    {
      schema: {
        summary: "Set or remove a tenant's quota in resource units (creates the tenant when missing)",
        tags: ["tenants"],
        params: TenantParams,
        body: QuotaBody,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      const { units } = req.body as { units: number | null };
      const next = await updateTenant(
        name,
        ({ quota: _, ...rest }) => (units === null ? rest : { ...rest, quota: { units } }),
        true,
      );
      return tenantView(next);
    },
  );

  api.put(
    "/tenants/:name/limits",
    {
      schema: {
        summary:
          "Set a tenant's deploy limits (upload and unpacked size, file count); {} returns to the server's",
        tags: ["tenants"],
        params: TenantParams,
        body: LimitsBody,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      const limits = req.body as TenantLimits;
      const next = await updateTenant(name, ({ limits: _, ...rest }) =>
        Object.keys(limits).length ? { ...rest, limits } : rest,
      );
      return tenantView(next);
    },
  );

  api.put(
    "/tenants/:name/image-user",
    {
      schema: {
        summary:
          "Let a tenant's containers run as their image's own user (user: image), or not: then they run as the tenant's uid (creates the tenant when missing)",
        tags: ["tenants"],
        params: TenantParams,
        body: ImageUserBody,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      const { allowed } = req.body as { allowed: boolean };
      const next = await updateTenant(
        name,
        ({ allowImageUser: _, ...rest }) => (allowed ? { ...rest, allowImageUser: true } : rest),
        true,
      );
      return tenantView(next);
    },
  );

  api.put(
    "/tenants/:name/domains",
    {
      schema: {
        summary: "Give a tenant its domains: only its routes may use those hosts and their subdomains",
        tags: ["tenants"],
        params: TenantParams,
        body: DomainsBody,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      const domains = [...new Set((req.body as { domains: string[] }).domains)].sort();
      await checkDomains(name, domains);
      const next = await updateTenant(name, ({ domains: _, ...rest }) =>
        domains.length ? { ...rest, domains } : rest,
      );
      return tenantView(next);
    },
  );

  api.get(
    "/tenants/:name/members",
    { schema: { summary: "A tenant's members and their roles", tags: ["tenants"], params: TenantParams } },
    async (req) => {
      const { name } = req.params as { name: string };
      const users = new Map((await store.list<User>("user")).items.map((o) => [o.key, o.value]));
      const items = (await store.list<Member>("member", { prefix: `${name}/` })).items.map((o) => ({
        ...o.value,
        ...(users.get(o.value.user)?.tenant ? { serviceAccount: true } : {}),
      }));
      return { items };
    },
  );

  api.put(
    "/tenants/:name/members/:user",
    {
      schema: {
        summary: "Give a user a role in a tenant (owner, deployer or viewer)",
        tags: ["tenants"],
        params: MemberParams,
        body: RoleBody,
      },
    },
    async (req) => {
      const { name, user } = req.params as { name: string; user: string };
      const { role } = req.body as { role: Role };
      const u = (await store.get<User>("user", user))?.value;
      if (!u) throw notFound(`no user ${user} (a platform admin creates users: herd users create ${user})`);
      if (u.tenant !== undefined && u.tenant !== name) {
        throw new HerdError(
          "invalid",
          `${user} is a service account of tenant ${u.tenant}; it cannot join ${name}`,
        );
      }
      const member: Member = {
        tenant: name,
        user,
        role,
        addedAt: new Date().toISOString(),
        addedBy: req.herd.principal.label,
      };
      await store.put("member", `${name}/${user}`, member);
      return member;
    },
  );

  api.delete(
    "/tenants/:name/members/:user",
    {
      schema: {
        summary: "Remove a user from a tenant (a service account is deleted, its tokens revoked)",
        tags: ["tenants"],
        params: MemberParams,
      },
    },
    async (req) => {
      const { name, user } = req.params as { name: string; user: string };
      const o = await store.get<Member>("member", `${name}/${user}`);
      if (!o) throw notFound(`${user} is not a member of tenant ${name}`);
      if (o.value.role === "owner" && !req.herd.principal.admin) {
        const owners = (await store.list<Member>("member", { prefix: `${name}/` })).items.filter(
          (m) => m.value.role === "owner",
        );
        if (owners.length === 1)
          throw conflict(`${user} is the last owner of tenant ${name}: add another owner first`);
      }
      await store.delete("member", o.key);
      const u = (await store.get<User>("user", user))?.value;
      if (u?.tenant === name) {
        await revokeAll(deps, user, req.herd.principal.label);
        await store.delete("user", user);
      }
      return o.value;
    },
  );

  api.post(
    "/tenants/:name/service-accounts",
    {
      schema: {
        summary: "Create a service account in a tenant with a role (then: POST /tokens {user})",
        tags: ["tenants"],
        params: TenantParams,
        body: ServiceAccountBody,
      },
    },
    async (req, reply) => {
      const { name } = req.params as { name: string };
      const body = req.body as { name: string; role: Role };
      const by = req.herd.principal.label;
      const user: User = {
        name: body.name,
        tenant: name,
        createdAt: new Date().toISOString(),
        createdBy: by,
      };
      try {
        await store.put("user", body.name, user, { expectRevision: 0 });
      } catch (err) {
        if ((err as { code?: string }).code === "conflict")
          throw conflict(`a user named ${body.name} already exists`);
        throw err;
      }
      const member: Member = {
        tenant: name,
        user: body.name,
        role: body.role,
        addedAt: user.createdAt,
        addedBy: by,
      };
      await store.put("member", `${name}/${body.name}`, member);
      reply.code(201);
      return { ...user, role: body.role };
    },
  );

  api.get(
    "/audit",
    {
      schema: {
        summary: "The audit trail of writes: who, what, when, from where, and the result",
        description:
          "A tenant's owners see their tenant's entries; a platform admin sees every entry (or one tenant's with ?tenant=).",
        tags: ["audit"],
        querystring: AuditQueryS,
      },
    },
    async (req) => {
      const q = req.query as AuditQuery;
      const everyTenant = req.herd.principal.admin && q.tenant === undefined;
      return { items: deps.audit.list({ ...q, tenant: everyTenant ? undefined : req.herd.tenant }) };
    },
  );
}
