/**
 * The agent's calls to the control plane (over node:http, not fetch: Node's
 * undici behind fetch would cost the agent about 12 MB; common/api-request.ts),
 * through its server list so a frozen or lost server is left for another:
 *
 *   get(path[, abort, waitMs]) the wait long poll
 *   post(path, body[, hedge])  heartbeats, load and exits; hedged ones go to the next server after 1 s
 *   reportImage                POST /registry/images: the registry keeps a release's image
 *   registryCredentials        POST /registry/credentials: the registries' login and CA (+ a certificate to serve one)
 *   keptImages                 GET  /registry/kept: what the registry this node serves must keep
 */

import type { ApiAnswer } from "../common/api-request.ts";
import type { HedgeTiming } from "../common/hedge.ts";
import type { Logger } from "../common/log.ts";
import type { ServerList } from "../common/server-list.ts";
import type { DesiredInstance } from "../model/protocol.ts";
import type { RegistryCredentials } from "./containers.ts";

/** How long one call to the control plane may take. */
const REQUEST_TIMEOUT_MS = 5000;

export class ControlPlaneCalls {
  readonly #servers: ServerList;
  readonly #ca: string | undefined;
  readonly #token: string;
  readonly #log: Logger;

  constructor(servers: ServerList, ca: string | undefined, token: string, log: Logger) {
    this.#servers = servers;
    this.#ca = ca;
    this.#token = token;
    this.#log = log;
  }

  post(path: string, body: unknown, hedge?: HedgeTiming): Promise<ApiAnswer> {
    return this.#servers.request(
      path,
      {
        ca: this.#ca,
        method: "POST",
        headers: { authorization: `Bearer ${this.#token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      },
      hedge ? { hedge } : {},
    );
  }

  /** A GET, ended by `abort` or after `waitMs` more than an ordinary call may take (a long poll waits that long). */
  get(path: string, opts: { abort?: AbortSignal; waitMs?: number } = {}): Promise<ApiAnswer> {
    const timeout = AbortSignal.timeout((opts.waitMs ?? 0) + REQUEST_TIMEOUT_MS);
    return this.#servers.request(path, {
      ca: this.#ca,
      method: "GET",
      headers: { authorization: `Bearer ${this.#token}` },
      signal: opts.abort ? AbortSignal.any([opts.abort, timeout]) : timeout,
    });
  }

  /** Tells the control plane the image (by digest) a release's service runs: the registry keeps it with the release. */
  reportImage(d: DesiredInstance, image: string): void {
    const body = { tenant: d.tenant, app: d.app, release: d.release, service: d.service, image };
    // Its answer read whole, also when ok: an answer left unread holds its connection.
    this.post("/api/v1/registry/images", body)
      .then((res) => answerText(res, "POST /registry/images"))
      .catch((err) => this.#log.warn("cannot report the image of a release", { id: d.id, image, err }));
  }

  /** The registries' credential and CA, and with `serve` a certificate for this node's registry. */
  async registryCredentials(serve?: string): Promise<RegistryCredentials> {
    const res = await this.post("/api/v1/registry/credentials", serve ? { serve } : {});
    return JSON.parse(await answerText(res, "POST /registry/credentials")) as RegistryCredentials;
  }

  /** The digests and images the registry this agent serves must keep. */
  async keptImages(): Promise<{ digests: string[]; images: string[] }> {
    const res = await this.get("/api/v1/registry/kept");
    return JSON.parse(await answerText(res, "GET /registry/kept")) as { digests: string[]; images: string[] };
  }
}

/** The answer's body, read whole; a failure names the call, its status and the body's start. */
async function answerText(res: ApiAnswer, call: string): Promise<string> {
  const text = await res.text();
  if (!res.ok) throw new Error(`${call} answered ${res.status}: ${text.slice(0, 200)}`);
  return text;
}
