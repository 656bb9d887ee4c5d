/**
 * Routes only the leader serves, when several servers share an etcd store
 * (store/leadership.ts): an agent's heartbeat (the node controller keeps the
 * time of the last one in memory, and only the leader checks nodes) and a
 * gateway's load report (the leader's autoscaler reads it). A follower answers
 * 503 with the leader's URL in `herd-leader`; the caller's server list
 * (common/server-list.ts) moves there.
 *
 *   agent ─► follower ─► 503 herd-leader: URL ─► agent ─► leader
 */

import type { FastifyReply, FastifyRequest } from "fastify";
import { HerdError } from "../common/errors.ts";
import { LEADER_HEADER } from "../common/server-list.ts";
import type { Leadership } from "../store/leadership.ts";

/** The routes (Fastify patterns) only the leader answers. */
export const LEADER_ONLY: ReadonlySet<string> = new Set([
  "POST /api/v1/nodes/:name/heartbeat",
  "PUT /api/v1/gateways/:id/load",
]);

/** An onRequest hook: followers send leader-only requests to the leader. */
export function leaderOnly(leadership: Leadership) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const url = req.routeOptions.url;
    if (url === undefined || leadership.leading || !LEADER_ONLY.has(`${req.method} ${url}`)) return undefined;
    const leader = await leadership.leader().catch(() => undefined);
    const err = new HerdError(
      "unavailable",
      leader
        ? `this server is not the leader: send this to ${leader.url}`
        : "no leader is elected yet: try again in a moment",
    );
    if (leader) reply.header(LEADER_HEADER, leader.url);
    return reply.code(503).header("retry-after", "1").send(err.toJSON());
  };
}
