/**
 * What the request path needs from the proxy that runs it: its limits, its
 * counters and its upstream pools. GatewayProxy (proxy.ts) is one; the
 * request path (chain.ts, exchange.ts, tunnel.ts, aggregate.ts) sees only
 * this, so none of them imports the proxy.
 */

import type http from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../common/log.ts";
import type { AcmeChallenges } from "./acme-challenge.ts";
import type { Admission } from "./admission.ts";
import type { HeldRequests } from "./hold.ts";
import type { Series } from "./metrics.ts";
import type { Endpoint, RouteTable } from "./route-table.ts";
import type { GatewaySpans } from "./spans.ts";
import type { UpstreamPool } from "./upstream-pool.ts";

export interface ProxyContext {
  readonly logger: Logger;
  /** Default idle timeout of upstream requests (ms). */
  readonly upstreamTimeoutMs: number;
  /** Default connect timeout of upstream connections (ms). */
  readonly connectTimeoutMs: number;
  /** Largest request body accepted. */
  readonly maxBodyBytes: number;
  /** Requests in flight this process handles at most; past shares of it, services shed by criticality. */
  readonly maxInflight: number;
  /** Requests in flight through this process now (proxied requests and aggregations; not tunnels). */
  inflight: number;
  /** The table new requests are matched against (a retry looks its service up here). */
  readonly table: RouteTable;
  /** Records spans when set. */
  readonly spans: GatewaySpans | null;
  /** Counters of requests no route took. */
  readonly unrouted: Series;
  /** Keep-alive connections for aggregation parts (node:http). */
  readonly partsAgent: http.Agent;
  /** Open WebSocket tunnels' sockets, cut when the proxy closes. */
  readonly tunnels: Set<Duplex>;
  /** Answers ACME HTTP-01 challenges before routing, when set. */
  readonly acmeChallenges: AcmeChallenges | null;
  /** Holds requests of services scaled to zero until an instance runs (hold.ts); null: they get a 503. */
  readonly holds: HeldRequests | null;
  /** Holds or sheds normal and low requests while the process is saturated (admission.ts); null: off. */
  readonly admission: Admission | null;
  /** The keep-alive pool to an endpoint with a connect timeout. */
  poolFor(endpoint: Endpoint, connectMs: number): UpstreamPool;
}
