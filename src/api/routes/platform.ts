/**
 * Platform-wide routes: nodes and the agent protocol (join, heartbeat, slugs;
 * log shipping is in logs.ts), events, and the snapshot + watch that gateways follow.
 */

import { createReadStream } from "node:fs";
import type { FastifyInstance } from "fastify";
import { systemClock } from "../../common/clock.ts";
import { HerdError } from "../../common/errors.ts";
import { PeerDirectory } from "../../controllers/peers.ts";
import { ProbeLog } from "../../controllers/probe-log.ts";
import type { InstanceConfig } from "../../model/config.ts";
import type { Instance, Kind, Node, Service } from "../../model/objects.ts";
import type { DesiredInstance, Heartbeat } from "../../model/protocol.ts";
import type { Informer } from "../../store/informer.ts";
import { joinNode } from "../credentials.ts";
import type { ApiDeps } from "../deps.ts";
import { metricsUrlFrom } from "../gateway-book.ts";
import { EventsQuery, HeartbeatBody, NodeParams, tenantOf, WATCHABLE, WatchQuery } from "../schemas.ts";
import { drained, streamNdjson } from "./streams.ts";

/** A sha256 digest in the path (slugs, runtimes). */
const DigestParams = {
  type: "object",
  properties: { digest: { type: "string", pattern: "^[0-9a-f]{64}$" } },
  required: ["digest"],
} as const;

/**
 * How a drain is going: done (nothing runs there any more: its agent may be
 * stopped and the node removed), or what it waits for.
 */
function drainStatus(node: string, all: Instance[]): { done: boolean; message: string } {
  const here = all.filter((i) => i.node === node && i.desired === "running");
  // Replaced, still stopping there (draining their requests first): not done until they stopped.
  const stopping = all.filter((i) => i.node === node && i.desired === "stopped" && i.state !== "stopped");
  if (here.length === 0 && stopping.length === 0) return { done: true, message: "drained" };
  if (here.length === 0)
    return {
      done: false,
      message: `${stopping.length} replaced instance${stopping.length === 1 ? "" : "s"} stopping`,
    };
  const waits = new Set<string>();
  for (const i of here) {
    if (i.mode === "pet") {
      waits.add(`pet ${i.id} holds its data here: move it with herd instances move ${i.id}`);
      continue;
    }
    const stuck = all.find(
      (p) =>
        p.tenant === i.tenant &&
        p.app === i.app &&
        p.service === i.service &&
        p.desired === "running" &&
        p.state === "pending" &&
        p.message,
    );
    if (stuck) waits.add(`${i.app}/${i.service}: its replacement cannot be placed (${stuck.message})`);
  }
  const left = `${here.length} instance${here.length === 1 ? "" : "s"} left`;
  return {
    done: false,
    message: waits.size > 0 ? `${left}; waiting: ${[...waits].join("; ")}` : `${left}, being replaced`,
  };
}

export function platformRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store, controllers } = deps;
  // New instances' health checks, into the log of the deploy that rolls them out.
  const probeLog = new ProbeLog(store, deps.deployLogs, systemClock);
  const peers = new PeerDirectory(controllers.informer, deps.platformEndpoints);

  api.get("/version", { schema: { summary: "Server version", tags: ["platform"] } }, async () => ({
    version: deps.version,
  }));

  api.get("/nodes", { schema: { summary: "Nodes and their state", tags: ["nodes"] } }, async () => {
    const instances = (await store.list<Instance>("instance")).items.map((o) => o.value);
    const items = (await store.list<Node>("node")).items.map((o) => {
      const here = instances.filter((i) => i.node === o.value.name && i.desired === "running");
      return {
        ...o.value,
        instances: here.length,
        ...(o.value.draining ? { drain: drainStatus(o.value.name, instances) } : {}),
      };
    });
    return { items };
  });

  // One join at a time: the check for a live credential and the new token are two writes.
  let joining: Promise<unknown> = Promise.resolve();
  api.post(
    "/nodes/:name/join",
    {
      schema: {
        summary: "Trade a join token for this node's credential (once per node name)",
        description:
          "The reply's token is an agent token bound to the node; the agent keeps it. 409 when the node already has a live credential; 401 when the join token is expired, revoked or used up.",
        tags: ["agent protocol"],
        params: NodeParams,
      },
    },
    async (req, reply) => {
      const name = (req.params as { name: string }).name;
      const joined = joining.then(() => joinNode(store, name, req.herd.principal));
      joining = joined.catch(() => {});
      const { secret, token } = await joined;
      reply.code(201);
      return { token: secret, id: token.id, kind: token.kind, node: name, createdAt: token.createdAt };
    },
  );

  api.post(
    "/nodes/:name/heartbeat",
    {
      schema: {
        summary: "Agent heartbeat: status up, desired instances down",
        tags: ["agent protocol"],
        params: NodeParams,
        body: HeartbeatBody,
      },
    },
    async (req, res) => {
      const name = (req.params as { name: string }).name;
      const body = req.body as Heartbeat;
      // A loopback URL from an agent on another machine means that machine.
      const metricsUrl = metricsUrlFrom(body.metricsUrl, req.socket.remoteAddress);
      const hb: Heartbeat = { ...body, ...(metricsUrl ? { metricsUrl } : {}) };
      const reply = await controllers.nodes.handleHeartbeat(name, hb);
      // One-off runs and jobs' runs travel as instances (controllers/jobs.ts).
      reply.instances.push(...(await controllers.jobs.heartbeat(name, hb.instances)));
      deps.metrics.fleet.record(name, hb);
      await probeLog.record(name, hb);
      // Each tenant's write-only ingest token, for the OTEL_* defaults the agent gives its instances.
      const tenants = reply.instances.map((i) => i.tenant);
      // Each instance's config version (and its content, when the agent applied another one).
      deps.config.recordApplied(hb.instances);
      const config = await deps.config.forInstances(reply.instances, hb.instances);
      const instances =
        config.size === 0 ? reply.instances : reply.instances.map((d) => withConfig(d, config.get(d.id)));
      const answer = {
        ...reply,
        instances,
        ingestTokens: await deps.ingestTokens.forTenants(tenants),
        services: tenantServices(controllers.informer, tenants),
      };
      // Its next heartbeat can come only after this answer: silence counts from now.
      controllers.nodes.answered(name);
      // The nodes' instance ports, when they differ from what the agent applies (controllers/peers.ts),
      // spliced in as the bytes encoded once for every node that gets them.
      const network = peers.forNode(tenants, hb.peersVersion);
      if (!network) return answer;
      const head = JSON.stringify(answer);
      res.header("content-type", "application/json; charset=utf-8");
      return Buffer.concat([
        Buffer.from(`${head.slice(0, -1)},"peers":`),
        peers.encode(network),
        Buffer.from("}"),
      ]);
    },
  );

  api.get(
    "/slugs/:digest",
    {
      schema: {
        summary: "A built slug (gzip tarball) by its sha256",
        tags: ["agent protocol"],
        params: DigestParams,
      },
    },
    async (req, reply) => {
      const { digest } = req.params as { digest: string };
      const who = req.herd.principal.token;
      // An agent fetches only what its own node runs: a slug another node's instances use is no business of it.
      if (who.kind === "agent") {
        await controllers.informer.sync();
        const mine =
          controllers.informer
            .by<Instance>("instance", "node", who.node ?? "")
            .some((o) => o.value.run.slug === digest) ||
          (await controllers.jobs.runsSlug(who.node ?? "", digest));
        if (!mine) throw new HerdError("not_found", `no slug ${digest} for an instance on node ${who.node}`);
      }
      if (!(await deps.artifacts.has(digest))) throw new HerdError("not_found", `no slug ${digest}`);
      reply.header("content-type", "application/gzip");
      return reply.send(await deps.artifacts.open(digest));
    },
  );

  api.get(
    "/runtimes/:digest",
    {
      schema: {
        summary: "A Node runtime an app chose with engines.node (the npm package's tarball) by its sha256",
        tags: ["agent protocol"],
        params: DigestParams,
      },
    },
    async (req, reply) => {
      const { digest } = req.params as { digest: string };
      // Public npm packages, no tenant's data: any agent may fetch any runtime this server keeps.
      const file = await deps.runtimes.tarball(digest);
      if (!file) throw new HerdError("not_found", `no Node runtime ${digest}`);
      reply.header("content-type", "application/gzip");
      return reply.send(createReadStream(file));
    },
  );

  api.get(
    "/events",
    {
      schema: {
        summary:
          "Events in time order: one app's, or the tenant's (with the platform's own for a platform admin)",
        tags: ["events"],
        querystring: EventsQuery,
      },
    },
    async (req) => {
      const q = req.query as { tenant?: string; app?: string; limit?: number };
      // The platform's own events (nodes) name nodes: for platform admins, as GET /nodes is.
      const platform = req.herd.principal.admin;
      return {
        items: await deps.events.list({ tenant: tenantOf(req), app: q.app, limit: q.limit, platform }),
      };
    },
  );

  api.get(
    "/snapshot",
    {
      schema: {
        summary: "Objects of some kinds and the revision they were read at",
        tags: ["watch"],
        querystring: WatchQuery,
      },
    },
    async (req) => {
      const kinds = parseKinds((req.query as { kinds?: string }).kinds);
      // One revision for all kinds: read the revision first; a later watch from it may repeat a change, never miss one.
      const revision = await store.revision();
      const items = [];
      for (const kind of kinds) items.push(...(await store.list(kind)).items);
      return { revision, items };
    },
  );

  api.get(
    "/watch",
    {
      schema: {
        summary: "Changes after a revision, as NDJSON; 410 when that revision is compacted",
        tags: ["watch"],
        querystring: WatchQuery,
      },
    },
    async (req, reply) => {
      const q = req.query as { kinds?: string; from?: number };
      const kinds = parseKinds(q.kinds);
      const signal = new AbortController();
      const iterator = store
        .watch({ kinds, fromRevision: q.from ?? (await store.revision()), signal: signal.signal })
        [Symbol.asyncIterator]();
      // Pull the first event before answering, so a compacted revision is a proper 410 rather than a broken stream.
      let first: Promise<IteratorResult<unknown>> | undefined = iterator.next();
      const early = await Promise.race([
        first.then((r) => ({ r })),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 20)),
      ]);
      const abort = streamNdjson(reply, deps.shutdown);
      if (abort.signal.aborted) signal.abort();
      else abort.signal.addEventListener("abort", () => signal.abort());
      const ping = setInterval(() => reply.raw.write('{"type":"ping"}\n'), 10_000);
      try {
        if (early) {
          first = undefined;
          if (early.r.done) return;
          reply.raw.write(`${JSON.stringify(early.r.value)}\n`);
        }
        for (;;) {
          const r = await (first ?? iterator.next());
          first = undefined;
          if (r.done) break;
          if (!reply.raw.write(`${JSON.stringify(r.value)}\n`)) await drained(reply);
        }
      } catch (err) {
        if (!signal.signal.aborted)
          reply.raw.write(`${JSON.stringify({ type: "error", error: (err as Error).message })}\n`);
      } finally {
        clearInterval(ping);
        signal.abort();
        reply.raw.end();
      }
    },
  );
}

function parseKinds(kinds: string | undefined): Kind[] {
  return (kinds ? kinds.split(",") : [...WATCHABLE]) as Kind[];
}

const withConfig = (d: DesiredInstance, config: InstanceConfig | undefined): DesiredInstance =>
  config ? { ...d, config } : d;

/** tenantServices' answers, kept until a service changes (asked on every heartbeat). */
const servicesCache = new WeakMap<Informer, { changes: number; byTenant: Map<string, string[]> }>();

/** Each tenant's services as `app/service` (service discovery's env, docs/service-discovery.md). */
function tenantServices(informer: Informer, tenants: string[]): Record<string, string[]> {
  const changes = informer.changes("service");
  let cache = servicesCache.get(informer);
  if (cache?.changes !== changes) {
    cache = { changes, byTenant: new Map() };
    servicesCache.set(informer, cache);
  }
  const out: Record<string, string[]> = {};
  for (const tenant of new Set(tenants)) {
    // The informer (synced by the heartbeat just before): no parse of the tenant's services per heartbeat.
    let names = cache.byTenant.get(tenant);
    if (!names) {
      names = informer
        .by<Service>("service", "tenant", tenant)
        .map((o) => `${o.value.app}/${o.value.name}`)
        .sort();
      cache.byTenant.set(tenant, names);
    }
    out[tenant] = names;
  }
  return out;
}
