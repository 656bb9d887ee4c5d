/**
 * The gateway's spans on the wire: one compact JSON batch per flush, posted
 * to `POST /api/v1/traces/gateway` and read here straight into the store's
 * column form (no Span objects, no attribute objects). OTLP JSON says the
 * same in about four times the bytes and costs about six times as much to
 * read; the gateway sends a span for every request, so its batches take the
 * cheap path. Apps keep OTLP and Zipkin.
 *
 *   {"series": [[route, tenant, app, service(, caller)], …],
 *    "spans":  [[traceId, spanId, parentId, series, method, status, outcome, start, duration, instance], …]}
 *
 * One SERVER span per request, service `gateway`, named `<method> <route>`:
 * - `parentId`: the caller's span id, or "" when the trace started here;
 * - `series`: an index into `series`; `tenant`, `app` and `service` are ""
 *   for a request that matched no service;
 * - `status`: the HTTP status answered (0: none, the client went away);
 *   `outcome`: how the gateway ended it (`ok`, `bad_gateway`, `no_route`…);
 * - `start` µs since the epoch, `duration` µs;
 * - `instance`: the upstream instance it was proxied to, or "" when none.
 *   A span of a request routed to a service carries its app (the `app`
 *   column) and `herd.service`, proxied or not (`herd traces --service
 *   app/svc` finds a 503 that reached no instance too).
 *   A proxied span carries `peer.service` (`app/service`) and `herd.instance`,
 *   and the upstream sees it as its parent, so the dependency map has the
 *   gateway → service edge whether or not the app sends spans of its own.
 * - A series with a fifth element `caller` (`app/service`) is an internal
 *   call (service discovery, gateway/internal-listener.ts): its spans are
 *   CLIENT spans of the caller's service, so the map draws caller → service.
 */

import { Problems } from "./problems.ts";
import type { SpanColumns } from "./span-store.ts";

/** The kind index of SERVER and CLIENT in SPAN_KINDS. */
const SERVER = 2;
const CLIENT = 3;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
/** An HTTP method is a token: it needs no escaping inside a JSON string. */
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/;
const OUTCOME = /^[a-z_]{1,40}$/;

/** One series as the spans' columns need it, its JSON fragments made once per batch. */
interface SeriesColumns {
  route: string;
  /** `"http.route":"…"` */
  routeJson: string;
  /** `app/service`, or null for no service. */
  peer: string | null;
  /** `,"peer.service":"…"`, or "" for no service. */
  peerJson: string;
  /** `,"herd.service":"…"` (the service routed to, proxied or not), or "" for no service. */
  serviceJson: string;
  app: string | null;
  tenant: string | null;
  /** The calling `app/service` of an internal request (service discovery), else null. */
  caller: string | null;
}

type Json = Record<string, unknown>;
const isString = (v: unknown, max: number): v is string => typeof v === "string" && v.length <= max;

/** Reads a gateway batch; throws a 400 HerdError naming each bad field. */
export function parseGatewayBatch(body: unknown): SpanColumns[] {
  const problems = new Problems();
  const b = body as Json;
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    problems.add("body", "must be a JSON object with series and spans");
    problems.check("gateway spans");
  }
  if (!Array.isArray(b.series)) problems.add("series", "must be an array");
  if (!Array.isArray(b.spans)) problems.add("spans", "must be an array");
  problems.check("gateway spans");
  const series = (b.series as unknown[]).map((raw, i) => readSeries(raw, `series[${i}]`, problems));
  problems.check("gateway spans");
  const rows = b.spans as unknown[];
  const out: SpanColumns[] = new Array(rows.length);
  for (let i = 0; i < rows.length && !problems.full; i++) {
    const row = rows[i];
    const path = `spans[${i}]`;
    if (!Array.isArray(row) || row.length !== 10) {
      problems.add(
        path,
        "must be an array of 10: traceId, spanId, parentId, series, method, status, outcome, start, duration, instance",
      );
      continue;
    }
    const [traceId, spanId, parentId, s, method, status, outcome, start, duration, instance] = row;
    const before = problems.list.length;
    if (typeof traceId !== "string" || !HEX32.test(traceId))
      problems.add(`${path}[0]`, "traceId must be 32 lower-case hex characters");
    if (typeof spanId !== "string" || !HEX16.test(spanId))
      problems.add(`${path}[1]`, "spanId must be 16 lower-case hex characters");
    if (parentId !== "" && (typeof parentId !== "string" || !HEX16.test(parentId))) {
      problems.add(`${path}[2]`, 'parentId must be 16 lower-case hex characters, or "" for none');
    }
    const one = Number.isInteger(s) ? series[s as number] : undefined;
    if (one === undefined)
      problems.add(`${path}[3]`, `series must be an index into series (0..${series.length - 1})`);
    if (typeof method !== "string" || !METHOD.test(method))
      problems.add(`${path}[4]`, "method must be an HTTP method");
    if (!Number.isInteger(status) || (status as number) < 0 || (status as number) > 999) {
      problems.add(`${path}[5]`, "status must be an HTTP status code, or 0 for none");
    }
    if (typeof outcome !== "string" || !OUTCOME.test(outcome))
      problems.add(`${path}[6]`, "outcome must be a word like ok or bad_gateway");
    if (!Number.isSafeInteger(start) || (start as number) <= 0)
      problems.add(`${path}[7]`, "start must be µs since the epoch");
    if (!Number.isSafeInteger(duration) || (duration as number) < 0)
      problems.add(`${path}[8]`, "duration must be µs, 0 or more");
    if (!isString(instance, 253))
      problems.add(`${path}[9]`, 'instance must be a string of at most 253 characters ("" for none)');
    if (problems.list.length > before) continue;
    const c = one as SeriesColumns;
    const code = status as number;
    const error = code >= 500 || code === 0 ? 1 : 0;
    const proxied = instance !== "" && c.peer !== null;
    const attributes = `{${c.routeJson},"http.request.method":"${method}","http.response.status_code":${code},"herd.outcome":"${outcome}"${c.serviceJson}${
      proxied ? `${c.peerJson},"herd.instance":${JSON.stringify(instance)}` : ""
    }}`;
    out[i] = [
      traceId as string,
      spanId as string,
      parentId === "" ? null : (parentId as string),
      c.caller ?? "gateway",
      `${method} ${c.route}`,
      c.route,
      proxied ? c.peer : null,
      c.caller === null ? SERVER : CLIENT,
      start as number,
      duration as number,
      error,
      code,
      null,
      c.app,
      c.tenant,
      attributes,
    ];
  }
  problems.check("gateway spans");
  return out;
}

function readSeries(raw: unknown, path: string, problems: Problems): SeriesColumns {
  const none: SeriesColumns = {
    route: "",
    routeJson: "",
    peer: null,
    peerJson: "",
    serviceJson: "",
    app: null,
    tenant: null,
    caller: null,
  };
  if (!Array.isArray(raw) || raw.length < 4 || raw.length > 5 || !raw.every((v) => isString(v, 1000))) {
    problems.add(path, "must be an array of 4 or 5 strings: route, tenant, app, service[, caller]");
    return none;
  }
  const [route, tenant, app, service, caller] = raw as string[];
  if (caller !== undefined && (app === "" || !/^[^/]+\/[^/]+$/.test(caller))) {
    problems.add(`${path}[4]`, "caller must be app/service, with a service routed to");
    return none;
  }
  if (route === "") {
    problems.add(`${path}[0]`, "route must not be empty");
    return none;
  }
  if ((app === "") !== (service === "") || (app !== "" && tenant === "")) {
    problems.add(path, 'tenant, app and service must all be given, or app and service both ""');
    return none;
  }
  const peer = app === "" ? null : `${app}/${service}`;
  return {
    route,
    routeJson: `"http.route":${JSON.stringify(route)}`,
    peer,
    peerJson: peer === null ? "" : `,"peer.service":${JSON.stringify(peer)}`,
    serviceJson: peer === null ? "" : `,"herd.service":${JSON.stringify(service)}`,
    app: app === "" ? null : app,
    tenant: app === "" ? null : tenant,
    caller: caller ?? null,
  };
}
