/**
 * The control plane as a list of servers (several `herd server`s on one etcd,
 * docs/high-availability.md): agents, gateways and the CLI take
 * `--server URL[,URL…]` and talk to one of them, moving on when it is away.
 *
 *   request(path) ─► current server ─┬─ answer ──────────────────────► caller
 *                                    ├─ 503 + herd-leader: URL ─► move there, again
 *                                    ├─ cannot connect / 503 ───► next server, again
 *                                    ├─ the caller's timeout passed ─► next server for the next request
 *                                    └─ with `hedge`: no answer yet after 1 s ─► the next server too, and
 *                                       another every 500 ms; the first answer wins and its server is used
 *                                       from then on (hedge.ts; heartbeats, load reports) — but a
 *                                       follower's 503 naming the first server as leader waits for its answer
 *                  (each server at most once per request; when none answers, a 503 if one came, else the error)
 *
 * Which one is current is shared by every request of the list's owner, so a
 * move made by a heartbeat also moves the log shipping and slug downloads.
 */

import { type ApiAnswer, type ApiRequestInit, apiRequest } from "./api-request.ts";
import { HerdError } from "./errors.ts";
import { type HedgeTiming, hedge } from "./hedge.ts";

/** The header a follower names the leader's URL in (set by api/leader-only.ts). */
export const LEADER_HEADER = "herd-leader";
const TRAILING_SLASHES = /\/+$/;

/** Splits `URL[,URL…]` into base URLs without a trailing slash; throws `invalid` for one that is not http(s). */
export function parseServers(spec: string): string[] {
  const urls = spec
    .split(",")
    .map((s) => s.trim().replace(/\/+$/, ""))
    .filter((s) => s !== "");
  if (urls.length === 0) throw new HerdError("invalid", "--server needs at least one URL");
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new HerdError("invalid", `--server: "${url}" is not a URL`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
      throw new HerdError("invalid", `--server: "${url}" must be http or https`);
  }
  return urls;
}

/** Servers of one control plane, and the one in use. */
export class ServerList {
  readonly #urls: string[];
  #current = 0;

  /** `spec`: `URL[,URL…]`. */
  constructor(spec: string) {
    this.#urls = parseServers(spec);
  }

  /** Every server, in the order given. */
  get all(): readonly string[] {
    return this.#urls;
  }

  /** The server in use now (base URL, no trailing slash). */
  get url(): string {
    return this.#urls[this.#current];
  }

  /**
   * Moves on from `url` after it failed: to `leader` when a follower named it
   * (added to the list when new), else to the next server. Nothing happens
   * when another request moved on already.
   */
  failed(url: string, leader?: string): void {
    if (this.url !== url) return;
    if (leader !== undefined) {
      const base = leader.replace(TRAILING_SLASHES, "");
      let i = this.#urls.indexOf(base);
      if (i < 0) i = this.#urls.push(base) - 1;
      this.#current = i;
      return;
    }
    this.#current = (this.#current + 1) % this.#urls.length;
  }

  /**
   * One API request (`path` from `/api/v1…`), moved to another server when
   * this one is away or not the leader. `hedge`: for a request that may be
   * sent twice, do not wait on a server that holds it (frozen, or its store
   * stalled): try the others as well after that long (hedge.ts).
   */
  async request(
    path: string,
    init: ApiRequestInit = {},
    options: { hedge?: HedgeTiming } = {},
  ): Promise<ApiAnswer> {
    const tried = new Set<string>();
    /** A 503 kept while other servers are tried: returned when none answers better. */
    let refused: ApiAnswer | undefined;
    for (;;) {
      let url = this.url;
      tried.add(url);
      let answer: ApiAnswer;
      try {
        if (options.hedge) {
          const order = [url, ...this.#urls.filter((u) => !tried.has(u))];
          for (const u of order) tried.add(u);
          const won = await hedge(order, (u, signal) => apiRequest(`${u}${path}`, { ...init, signal }), {
            ...options.hedge,
            ...(init.signal ? { signal: init.signal } : {}),
            discard: (late) => late.cancel(),
            // A follower's quick 503 naming as leader the server asked first must not beat that
            // server's answer, still to come (a leader under load): it is the result only if none comes.
            passOn: (a) => a.status === 503 && leaderOf(a) === order[0],
          });
          // The server that held the request is away: the next requests go to the one that answered.
          if (won.server !== url) this.#current = this.#urls.indexOf(won.server);
          url = won.server;
          answer = won.answer;
        } else answer = await apiRequest(`${url}${path}`, init);
      } catch (err) {
        if (init.signal?.aborted) {
          // A server that let the caller's deadline pass (stopped, cut off) is away: the next request goes elsewhere.
          if ((init.signal.reason as Error | undefined)?.name === "TimeoutError") this.failed(url);
          throw err;
        }
        this.failed(url);
        if (!tried.has(this.url)) continue;
        if (refused) return refused;
        throw err;
      }
      if (answer.status !== 503) {
        refused?.cancel();
        return answer;
      }
      this.failed(url, leaderOf(answer));
      refused?.cancel();
      refused = answer;
      if (tried.has(this.url)) return answer;
    }
  }
}

/** The leader a follower's 503 names (no trailing slash), if it names one. */
function leaderOf(answer: ApiAnswer): string | undefined {
  const leader = answer.headers[LEADER_HEADER];
  return typeof leader === "string" ? leader.replace(TRAILING_SLASHES, "") : undefined;
}

/** One list per spec in a process, so every part of a gateway or agent given the same `--server` moves together. */
const lists = new Map<string, ServerList>();

/** The process's ServerList for `spec` (`URL[,URL…]`). */
export function serversOf(spec: string): ServerList {
  const key = parseServers(spec).join(",");
  let list = lists.get(key);
  if (!list) {
    list = new ServerList(key);
    lists.set(key, list);
  }
  return list;
}
