/**
 * The agent's long poll (node-waits.ts): `GET /nodes/:name/wait?since=R`
 * returns `{revision}` as soon as what the node's agent is told changed after
 * R (a new instance, a stop, a restart), or after `timeoutMs`; the agent then
 * heartbeats at once and learns what changed from the heartbeat's reply.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { ApiDeps } from "../deps.ts";
import { NodeWaits } from "../node-waits.ts";
import { NodeParams } from "../schemas.ts";

/**
 * How long one wait stays open at most (and by default): short enough that
 * proxies and clients with a 20–30 s read timeout never cut it.
 */
const MAX_WAIT_MS = 15_000;

const WaitQuery = T.Object(
  {
    since: T.Optional(T.Integer({ minimum: 0, description: "the revision the last answer gave" })),
    timeoutMs: T.Optional(T.Integer({ minimum: 0, maximum: MAX_WAIT_MS })),
  },
  { additionalProperties: false },
);

export function nodeWaitRoutes(api: FastifyInstance, deps: ApiDeps): void {
  let waits: NodeWaits | undefined;
  api.get(
    "/nodes/:name/wait",
    {
      schema: {
        summary:
          "Agent long poll: returns when the node's desired instances change (then the agent heartbeats)",
        description:
          "Answers `{revision}` at once without `since` or when the node changed after it; else when it changes, or after `timeoutMs` (at most and by default 15 s) with the same revision.",
        tags: ["agent protocol"],
        params: NodeParams,
        querystring: WaitQuery,
      },
    },
    async (req, reply) => {
      const { name } = req.params as { name: string };
      const { since, timeoutMs } = req.query as { since?: number; timeoutMs?: number };
      waits ??= new NodeWaits(deps.store, deps.shutdown, (message, err) => api.log.warn({ err }, message));
      const gone = new AbortController();
      // The response closes with the connection (the agent stopped or restarted): the wait ends.
      reply.raw.once("close", () => gone.abort());
      const revision = await waits.wait(name, since, timeoutMs ?? MAX_WAIT_MS, gone.signal);
      return { revision };
    },
  );
}
