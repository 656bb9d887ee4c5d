/**
 * `GET /capacity`: per node and per tenant, CPU and memory allocatable,
 * requested, free and used (../capacity.ts).
 *
 * Permission `tenant:read` (every role of a tenant holds it). A platform admin
 * who names no tenant sees every tenant; anyone else (or an admin with
 * `?tenant=`) sees the nodes' totals — every tenant's instances summed, not
 * who they belong to — and one tenant's own figures, also per node.
 */

import type { FastifyInstance } from "fastify";
import type { Instance, Node, Service, Tenant } from "../../model/objects.ts";
import { capacityReport } from "../capacity.ts";
import type { ApiDeps } from "../deps.ts";
import { TenantQuery, telemetryTenant } from "../schemas.ts";

export function capacityRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;
  api.get(
    "/capacity",
    {
      schema: {
        summary: "CPU and memory per node and per tenant: allocatable, requested, free, used",
        description:
          "requested: what the instances placed ask for; free: allocatable (CPU: times the node's cpuOvercommit) " +
          "minus requested (what placement can " +
          "still give); used: what the agents measure. A platform admin naming no tenant sees every tenant; " +
          "a tenant's members see the nodes' totals and their own tenant's figures.",
        tags: ["nodes"],
        querystring: TenantQuery,
      },
    },
    async (req) => {
      // The same rule as telemetry reads: undefined means a platform admin seeing every tenant.
      const only = telemetryTenant(req);
      const [nodes, instances, services, tenants] = await Promise.all([
        store.list<Node>("node"),
        store.list<Instance>("instance"),
        store.list<Service>("service", only === undefined ? {} : { prefix: `${only}/` }),
        only === undefined
          ? store.list<Tenant>("tenant").then((r) => r.items)
          : store.get<Tenant>("tenant", only).then((o) => (o ? [o] : [])),
      ]);
      return capacityReport({
        nodes: nodes.items.map((o) => o.value),
        instances: instances.items.map((o) => o.value),
        services: services.items.map((o) => o.value),
        tenants: tenants.map((o) => o.value),
        unit: deps.settings.unit,
        report: (node) => deps.metrics.fleet.report(node),
        ...(only === undefined ? {} : { only }),
      });
    },
  );
}
