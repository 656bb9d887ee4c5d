/**
 * Operating the cluster: cordon, uncordon, drain and remove nodes, move
 * instances. Tenants and their quotas are in tenants.ts.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, HerdError, notFound } from "../../common/errors.ts";
import { revokeTokens } from "../../controllers/revoke-tokens.ts";
import { FINISHED, type Run } from "../../model/job.ts";
import type { Instance, Node } from "../../model/objects.ts";
import type { StoredObject } from "../../store/store.ts";
import { updateObject } from "../../store/store.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, NodeParams, TenantQuery, tenantOf } from "../schemas.ts";

const MoveBody = T.Object({ to: T.Optional(NodeParams.properties.name) }, { additionalProperties: false });
const InstanceParams = T.Object({ app: AppParams.properties.app, id: T.String({ maxLength: 100 }) });

/**
 * What removing a node would leave without a home: on a live node every
 * instance not stopped (its agent would keep running what herd forgot) and
 * every unfinished run; on a lost one what should still run (its pets: its
 * cattle were replaced, its runs failed).
 */
export function removalBlockers(lost: boolean, instances: Instance[], runs: Run[]): string[] {
  return [
    ...instances.filter((i) => (lost ? i.desired === "running" : i.state !== "stopped")).map((i) => i.id),
    ...(lost ? [] : runs.filter((r) => !FINISHED.has(r.state)).map((r) => `run ${r.id}`)),
  ];
}

export function clusterRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;

  /** Applies `change` to a node, retrying on a concurrent write (heartbeats write nodes too). */
  const updateNode = async (name: string, change: (n: Node) => Node): Promise<Node> => {
    const written = await updateObject<Node>(store, "node", name, (o) => {
      if (!o) throw notFound(`no node ${name}`);
      return change(o.value);
    });
    return written!.value;
  };

  const nodeAction = (
    action: string,
    summary: string,
    change: (n: Node) => Node,
    event: (n: string) => string,
  ) =>
    api.post(
      `/nodes/:name/${action}`,
      { schema: { summary, tags: ["nodes"], params: NodeParams } },
      async (req) => {
        const { name } = req.params as { name: string };
        const node = await updateNode(name, change);
        await deps.events.record({
          node: name,
          reason: `Node${action[0].toUpperCase()}${action.slice(1)}`,
          message: event(name),
        });
        return node;
      },
    );

  nodeAction(
    "cordon",
    "Stop placing new instances on a node",
    (n) => ({ ...n, schedulable: false }),
    (n) => `node ${n} cordoned: nothing new is placed there`,
  );
  nodeAction(
    "uncordon",
    "Place instances on a node again (ends a drain)",
    ({ draining: _, ...n }) => ({ ...n, schedulable: true }),
    (n) => `node ${n} uncordoned`,
  );
  nodeAction(
    "drain",
    "Cordon a node and move its cattle elsewhere, each replaced before it stops",
    (n) => ({ ...n, schedulable: false, draining: true }),
    (n) => `node ${n} draining: its instances are being replaced elsewhere`,
  );

  api.delete(
    "/nodes/:name",
    {
      schema: {
        summary: "Remove a node for good: its record goes and its credential is revoked",
        description:
          "A node that is not lost may hold no instance and no unfinished run (drain it, move its pets); a lost node's replaced cattle go with it, but its pets must be moved first. 409 names what is left. Its agent cannot heartbeat again: a machine joins anew with a join token.",
        tags: ["nodes"],
        params: NodeParams,
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      let revoked = 0;
      for (;;) {
        const o = await store.get<Node>("node", name);
        if (!o) throw notFound(`no node ${name}`);
        const lost = o.value.state === "lost";
        // From the informer's node indexes (synced: as fresh as a store read), not whole kinds.
        const { informer } = deps.controllers;
        await informer.sync();
        const here = informer.by<Instance>("instance", "node", name);
        const runs = informer.by<Run>("run", "node", name);
        const what = removalBlockers(
          lost,
          here.map((i) => i.value),
          runs.map((r) => r.value),
        );
        if (what.length > 0) {
          const shown =
            what.length > 5 ? `${what.slice(0, 5).join(", ")} and ${what.length - 5} more` : what.join(", ");
          throw conflict(
            `node ${name} still holds ${shown}: ${
              lost
                ? "a pet on a lost node waits for it; move it first (herd instances move ID)"
                : `drain it first (herd nodes drain ${name}), move its pets (herd instances move ID) and let its runs end`
            }`,
          );
        }
        // Its credential first: a heartbeat after this is refused, so none writes the node back.
        revoked += await revokeTokens(
          store,
          (t) => t.kind === "agent" && t.node === name,
          req.herd.principal.label,
        );
        // A heartbeat written meanwhile: looked at again.
        if (!(await store.delete("node", name, { expectRevision: o.revision }).catch(() => false))) continue;
        for (const i of here)
          await store.delete("instance", i.key, { expectRevision: i.revision }).catch(() => {});
        await deps.events.record({
          node: name,
          reason: "NodeRemoved",
          message: `node ${name} removed by ${req.herd.principal.label}${here.length > 0 ? ` with ${here.length} stopped or replaced instance record(s)` : ""}; ${revoked} credential(s) revoked: its agent cannot come back without a new join token`,
        });
        return { removed: name, instances: here.length, credentialsRevoked: revoked };
      }
    },
  );

  api.post(
    "/apps/:app/instances/:id/move",
    {
      schema: {
        summary:
          "Move an instance: cattle are replaced on another node first; a pet restarts on `to` (its data stays behind)",
        tags: ["apps"],
        params: InstanceParams,
        querystring: TenantQuery,
        body: MoveBody,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app, id } = req.params as { app: string; id: string };
      const { to } = req.body as { to?: string };
      const o = await store.get<Instance>("instance", id);
      if (!o || o.value.tenant !== tenant || o.value.app !== app || o.value.desired !== "running") {
        throw notFound(`app ${app} has no running instance ${id}`);
      }
      const i = o.value;
      if (to !== undefined) {
        if (i.mode !== "pet") {
          throw new HerdError(
            "invalid",
            "only pets are moved to a chosen node; cattle go where the scheduler puts them",
            [{ field: "to", message: "only for pets" }],
          );
        }
        if (!(await store.get<Node>("node", to))) {
          throw new HerdError("invalid", `no node ${to}`, [{ field: "to", message: "no such node" }]);
        }
        if (to === i.node)
          throw new HerdError("invalid", `${id} is already on ${to}`, [
            { field: "to", message: "same node" },
          ]);
      }
      if (i.moving) throw conflict(`${id} is already moving`);
      const moved: StoredObject<Instance> = await store.put(
        "instance",
        o.key,
        { ...i, moving: to ? { to } : {} },
        { expectRevision: o.revision },
      );
      await deps.events.record({
        tenant,
        app,
        service: i.service,
        instance: id,
        node: i.node ?? undefined,
        reason: "MoveRequested",
        message: `${id} is moving off ${i.node ?? "its node"}${to ? ` to ${to}` : ""}`,
      });
      return moved.value;
    },
  );
}
