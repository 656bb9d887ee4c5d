/**
 * Follows the control plane: one snapshot of services, instances and nodes,
 * then the watch from that revision. Keeps the objects in maps and hands a
 * freshly built RouteTable to `onTable` after each change (bursts coalesced).
 *
 * When the control plane is away the last table keeps serving while this
 * reconnects with backoff from the last revision seen; a 410 (history
 * compacted) means a new snapshot. Every applied state is also written to
 * `<dataDir>/gateway-cache.json`, so a gateway restarted during an outage
 * serves its last configuration.
 *
 * A configuration that cannot be built (buildRouteTable throws, e.g. on a
 * route object that fails validation) is refused: the last good table keeps
 * serving, the cache keeps the last good objects, and `onResult` reports the
 * refusal with its reason (a NACK) until a later version builds.
 *
 * Consumers' HS256 secrets are not in the snapshot or the watch: a consumer
 * holds only a reference (`secretRef`). When one is new to this gateway, the
 * gateway fetches the values (GET /gateways/jwt-secrets, with its own
 * credential) and fills them in before the table is built.
 */

import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ApiAnswer } from "../common/api-request.ts";
import type { Logger } from "../common/log.ts";
import { serversOf } from "../common/server-list.ts";
import { GATEWAY_KINDS } from "../model/gateway-view.ts";
import type { RouteObject } from "../model/live-config.ts";
import type { Consumer, Instance, Node, Service, StoredObject, WatchEvent } from "../model/objects.ts";
import {
  type BuildOptions,
  buildRouteTable,
  EMPTY_TABLE,
  type RouteObjects,
  type RouteTable,
} from "./route-table.ts";

/** The kinds the gateway needs, as the `kinds` query parameter. */
const KINDS_PARAM = GATEWAY_KINDS.join(",");

/** The kinds of object a table is built from. */
type GatewayKind = "service" | "instance" | "node" | "consumer" | "route";

/** The outcome of one build: applied (ACK) or refused (NACK) with the reason. */
export interface BuildResult {
  /** The config version (revision) that was built. */
  version: number;
  applied: boolean;
  error?: string;
  /** The table serving now: the new one, or the last good one after a refusal. */
  serving: RouteTable;
}

/** File name of the disk cache inside the data dir. */
export const CACHE_FILE = "gateway-cache.json";

/** How a ConfigSource is set up. */
export interface ConfigSourceOptions {
  /** Control-plane base URL, e.g. `http://127.0.0.1:7070`. */
  server: string;
  token: string;
  dataDir: string;
  logger: Logger;
  /** Receives every new table, in order. */
  onTable(table: RouteTable): void;
  /**
   * Receives the objects each table was built from, with their revision, in
   * order (a cluster primary forwards them to its workers, which build their
   * own tables). Called right after `onTable`.
   */
  onObjects?(objects: RouteObjects, revision: number): void;
  /** Receives the outcome of every build, applied or refused. */
  onResult?(result: BuildResult): void;
  /** At most one rebuild per this many ms; the first change after a quiet spell applies at once. Default 10. */
  rebuildIntervalMs?: number;
  /** At most one cache write per this many ms. Default 1000. */
  cacheIntervalMs?: number;
  /** A watch that sends nothing (not even a ping, due every 10 s) for this long is dropped and reopened. Default 30 s. */
  watchIdleMs?: number;
  /** Snapshot requests that take longer fail. Default 10 s. */
  snapshotTimeoutMs?: number;
  /** Reconnect delays double from the first to the last. Default 100 ms and 5 s. */
  backoffMs?: { first: number; max: number };
  /** How route JWKS are fetched and read (the URL guard, the JWKS directory). */
  build?: Pick<BuildOptions, "guard" | "jwksDir">;
}

/** What the disk cache holds: the objects as the control plane stored them. */
interface CacheFile {
  revision: number;
  items: StoredObject[];
  /** HS256 secrets by `<tenant>/<consumer>/<credential id>` (the cache file is private: mode 0600). */
  jwtSecrets?: Record<string, string>;
}

/** The control plane answered 410: the revision we watch from is compacted. */
class WatchGone extends Error {}

/** Follows the control plane's snapshot and watch and turns them into route tables. */
export class ConfigSource {
  readonly #options: ConfigSourceOptions;
  readonly #logger: Logger;
  readonly #cacheFile: string;
  readonly #byKind: Record<GatewayKind, Map<string, StoredObject>> = {
    service: new Map(),
    instance: new Map(),
    node: new Map(),
    consumer: new Map(),
    route: new Map(),
  };
  readonly #stop = new AbortController();
  #revision = 0;
  #lastBuild = Number.NEGATIVE_INFINITY;
  /** The last table built (its rate-limit state carries over to the next). */
  #table: RouteTable | undefined;
  #rebuildTimer: NodeJS.Timeout | undefined;
  #lastProblems = "";
  #cacheDirty = false;
  #lastCacheWrite = Number.NEGATIVE_INFINITY;
  #cacheTimer: NodeJS.Timeout | undefined;
  #cacheWrite: Promise<void> | undefined;
  /** The objects of the last table that built: what the cache holds (never a refused configuration). */
  #lastGood: CacheFile | undefined;
  #lastResult: BuildResult | undefined;
  #following: Promise<void> | undefined;
  /** The watch connection open now (reconnect() aborts it). */
  #connection: AbortController | undefined;
  /** HS256 secrets fetched from the control plane, by `<tenant>/<consumer>/<credential id>`. */
  #jwtSecrets = new Map<string, string>();

  constructor(options: ConfigSourceOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#cacheFile = join(options.dataDir, CACHE_FILE);
  }

  /** The revision of the last applied change (0 before any). */
  get revision(): number {
    return this.#revision;
  }

  /** The outcome of the last build (undefined before any). */
  get lastResult(): BuildResult | undefined {
    return this.#lastResult;
  }

  /**
   * Loads the disk cache, if there is a readable one, and applies it at once.
   * Returns whether it did. A damaged cache is reported and ignored.
   */
  async loadCache(): Promise<boolean> {
    let text: string;
    try {
      text = await readFile(this.#cacheFile, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        this.#logger.warn("cannot read the gateway cache; starting empty", {
          file: this.#cacheFile,
          error: err,
        });
      }
      return false;
    }
    let cache: CacheFile;
    try {
      cache = parseSnapshot(JSON.parse(text));
    } catch (err) {
      this.#logger.warn("the gateway cache is damaged; ignoring it", { file: this.#cacheFile, error: err });
      return false;
    }
    this.#replaceAll(cache);
    if (!this.#rebuild(false)) return false;
    this.#logger.info("serving the cached configuration until the control plane answers", {
      revision: cache.revision,
      objects: cache.items.length,
    });
    return true;
  }

  /**
   * Starts following the control plane. Resolves once the first snapshot has
   * been applied or has failed (then it keeps trying in the background).
   */
  start(): Promise<void> {
    return new Promise((resolve) => {
      this.#following = this.#follow(resolve);
    });
  }

  /**
   * Drops the watch connection now; following goes on with the next attempt
   * (after the usual backoff). A control plane that is closing waits for
   * every open connection, and a watch never ends by itself.
   */
  reconnect(): void {
    this.#connection?.abort(new Error("asked to reconnect"));
  }

  /** Stops following and writes any pending cache update. */
  async close(): Promise<void> {
    this.#stop.abort();
    await this.#following;
    clearTimeout(this.#rebuildTimer);
    clearTimeout(this.#cacheTimer);
    await this.#cacheWrite;
    if (this.#cacheDirty) await this.#writeCache();
  }

  async #follow(firstAttemptDone: () => void): Promise<void> {
    const { first, max } = this.#options.backoffMs ?? { first: 100, max: 5000 };
    const signal = this.#stop.signal;
    let backoff = first;
    let needSnapshot = true;
    while (!signal.aborted) {
      try {
        if (needSnapshot) {
          await this.#snapshot();
          needSnapshot = false;
        }
        firstAttemptDone();
        if (await this.#watch()) backoff = first;
      } catch (err) {
        firstAttemptDone();
        if (signal.aborted) break;
        if (err instanceof WatchGone) {
          this.#logger.info("watch history compacted; taking a new snapshot", { revision: this.#revision });
          needSnapshot = true;
          continue;
        }
        this.#logger.warn("control plane unreachable; serving the last table", {
          server: this.#options.server,
          retryInMs: backoff,
          error: describe(err),
        });
      }
      if (signal.aborted) break;
      // Jitter spreads the reconnects of many gateways after a control-plane restart.
      await sleep(backoff * (0.8 + Math.random() * 0.4), undefined, { signal }).catch(() => {});
      backoff = Math.min(backoff * 2, max);
    }
    firstAttemptDone();
  }

  async #snapshot(): Promise<void> {
    const timeout = AbortSignal.timeout(this.#options.snapshotTimeoutMs ?? 10_000);
    const res = await serversOf(this.#options.server).request(`/api/v1/snapshot?kinds=${KINDS_PARAM}`, {
      headers: { authorization: `Bearer ${this.#options.token}`, accept: "application/json" },
      signal: AbortSignal.any([this.#stop.signal, timeout]),
    });
    if (!res.ok) throw new Error(`snapshot: HTTP ${res.status}: ${await errorText(res)}`);
    const snapshot = parseSnapshot(await res.json());
    this.#replaceAll(snapshot);
    if (this.#missingJwtSecrets()) await this.#fetchJwtSecrets();
    this.#logger.info("applied snapshot", { revision: snapshot.revision, objects: snapshot.items.length });
    this.#changed();
  }

  /**
   * Reads the watch stream until it ends. Returns whether it connected (so
   * the caller resets its backoff); throws WatchGone on 410.
   */
  async #watch(): Promise<boolean> {
    // Secrets a failed fetch left missing are fetched before following again.
    if (this.#missingJwtSecrets()) {
      await this.#fetchJwtSecrets();
      this.#changed();
    }
    const connection = new AbortController();
    this.#connection = connection;
    const idleMs = this.#options.watchIdleMs ?? 30_000;
    // A half-open connection never ends by itself; silence longer than the ping interval ends it.
    const idle = setTimeout(
      () => connection.abort(new Error(`no data from the watch for ${idleMs} ms`)),
      idleMs,
    );
    try {
      const res = await serversOf(this.#options.server).request(
        `/api/v1/watch?kinds=${KINDS_PARAM}&from=${this.#revision}`,
        {
          headers: { authorization: `Bearer ${this.#options.token}`, accept: "application/x-ndjson" },
          signal: AbortSignal.any([this.#stop.signal, connection.signal]),
        },
      );
      if (res.status === 410) {
        res.cancel();
        throw new WatchGone();
      }
      if (!res.ok) throw new Error(`watch: HTTP ${res.status}: ${await errorText(res)}`);
      idle.refresh();
      const decoder = new TextDecoder();
      let pending = "";
      for await (const bytes of res.body) {
        idle.refresh();
        pending += decoder.decode(bytes, { stream: true });
        let start = 0;
        let changed = false;
        for (let newline = pending.indexOf("\n"); newline !== -1; newline = pending.indexOf("\n", start)) {
          const line = pending.slice(start, newline);
          start = newline + 1;
          if (this.#applyLine(line)) changed = true;
        }
        pending = pending.slice(start);
        if (changed && this.#missingJwtSecrets()) await this.#fetchJwtSecrets();
        // One chunk is one batch: the events that arrived together make one table.
        if (changed) this.#changed();
      }
      this.#logger.info("watch ended; reconnecting", { revision: this.#revision });
      return true;
    } catch (err) {
      if (connection.signal.aborted && !this.#stop.signal.aborted) throw connection.signal.reason;
      throw err;
    } finally {
      clearTimeout(idle);
    }
  }

  /** Applies one NDJSON line; returns whether an object changed. */
  #applyLine(line: string): boolean {
    if (line.trim() === "") return false;
    let event: WatchEvent;
    try {
      event = JSON.parse(line);
    } catch {
      this.#logger.warn("ignoring a watch line that is not JSON", { line: line.slice(0, 200) });
      return false;
    }
    if (event.type !== "put" && event.type !== "delete") return false; // pings, and types added later
    const map = this.#byKind[event.kind as GatewayKind];
    if (map === undefined || typeof event.key !== "string" || typeof event.revision !== "number")
      return false;
    if (event.revision > this.#revision) this.#revision = event.revision;
    if (event.type === "delete") return map.delete(event.key);
    if (typeof event.object !== "object" || event.object === null) return false;
    map.set(event.key, event.object);
    return true;
  }

  #replaceAll(snapshot: CacheFile): void {
    for (const map of Object.values(this.#byKind)) map.clear();
    for (const item of snapshot.items) this.#byKind[item.kind as GatewayKind]?.set(item.key, item);
    this.#revision = snapshot.revision;
    if (snapshot.jwtSecrets) this.#jwtSecrets = new Map(Object.entries(snapshot.jwtSecrets));
  }

  /** Whether a consumer has an HS256 credential whose secret this gateway has not fetched yet. */
  #missingJwtSecrets(): boolean {
    for (const o of this.#byKind.consumer.values()) {
      const c = o.value as Consumer;
      if (c.jwt?.some((j) => j.secretRef && !this.#jwtSecrets.has(`${c.tenant}/${c.name}/${j.id}`)))
        return true;
    }
    return false;
  }

  /** Fetches every consumer's HS256 secret (the one read of secret values, for gateways and admins only). */
  async #fetchJwtSecrets(): Promise<void> {
    const timeout = AbortSignal.timeout(this.#options.snapshotTimeoutMs ?? 10_000);
    const res = await serversOf(this.#options.server).request(`/api/v1/gateways/jwt-secrets`, {
      headers: { authorization: `Bearer ${this.#options.token}`, accept: "application/json" },
      signal: AbortSignal.any([this.#stop.signal, timeout]),
    });
    if (!res.ok) throw new Error(`jwt secrets: HTTP ${res.status}: ${await errorText(res)}`);
    const body = (await res.json()) as {
      items?: { tenant: string; consumer: string; id: string; secret: string }[];
    };
    if (!Array.isArray(body.items)) throw new Error("jwt secrets: expected {items: [...]}");
    this.#jwtSecrets = new Map(
      body.items
        .filter((i) => typeof i?.secret === "string")
        .map((i) => [`${i.tenant}/${i.consumer}/${i.id}`, i.secret]),
    );
  }

  /** A consumer with its HS256 secrets filled in (the table checks signatures with them). */
  #withSecrets(c: Consumer): Consumer {
    if (!c.jwt?.some((j) => j.secretRef)) return c;
    return {
      ...c,
      jwt: c.jwt.map((j) => {
        const secret = j.secretRef ? this.#jwtSecrets.get(`${c.tenant}/${c.name}/${j.id}`) : undefined;
        return secret === undefined ? j : { ...j, secret };
      }),
    };
  }

  /** A change arrived: rebuild now if the last rebuild is old enough, else once the interval is up. */
  #changed(): void {
    if (this.#rebuildTimer !== undefined) return;
    const wait = this.#lastBuild + (this.#options.rebuildIntervalMs ?? 10) - performance.now();
    if (wait <= 0) {
      this.#rebuild();
      return;
    }
    this.#rebuildTimer = setTimeout(() => {
      this.#rebuildTimer = undefined;
      this.#rebuild();
    }, wait);
  }

  /**
   * Builds and hands over a table; `persist` is false when the objects came
   * from the cache itself. Returns whether it built; if not, the last good
   * table keeps serving and the refusal is reported.
   */
  #rebuild(persist = true): boolean {
    this.#lastBuild = performance.now();
    const objects: RouteObjects = {
      services: valuesOf<Service>(this.#byKind.service),
      instances: valuesOf<Instance>(this.#byKind.instance),
      nodes: valuesOf<Node>(this.#byKind.node),
      consumers: valuesOf<Consumer>(this.#byKind.consumer).map((c) => this.#withSecrets(c)),
      routes: valuesOf<RouteObject>(this.#byKind.route),
    };
    let table: RouteTable;
    try {
      table = buildRouteTable(objects, this.#revision, {
        ...this.#options.build,
        previous: this.#table,
        logger: this.#logger,
      });
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      if (this.#lastResult?.applied !== false || this.#lastResult.error !== error) {
        this.#logger.warn("configuration refused; the last good table keeps serving", {
          version: this.#revision,
          serving: this.#table?.version ?? 0,
          error,
        });
      }
      this.#lastResult = {
        version: this.#revision,
        applied: false,
        error,
        serving: this.#table ?? EMPTY_TABLE,
      };
      this.#options.onResult?.(this.#lastResult);
      return false;
    }
    this.#table = table;
    this.#lastGood = {
      revision: this.#revision,
      items: this.#items(),
      ...(this.#jwtSecrets.size > 0 ? { jwtSecrets: Object.fromEntries(this.#jwtSecrets) } : {}),
    };
    this.#options.onTable(table);
    this.#options.onObjects?.(objects, this.#revision);
    this.#lastResult = { version: this.#revision, applied: true, serving: table };
    this.#options.onResult?.(this.#lastResult);
    const problems = table.problems.join("\n");
    if (problems !== this.#lastProblems) {
      for (const problem of table.problems) this.#logger.warn(problem, { version: table.version });
      this.#lastProblems = problems;
    }
    if (persist) this.#scheduleCacheWrite();
    return true;
  }

  #items(): StoredObject[] {
    return [
      ...this.#byKind.service.values(),
      ...this.#byKind.instance.values(),
      ...this.#byKind.node.values(),
      ...this.#byKind.consumer.values(),
      ...this.#byKind.route.values(),
    ];
  }

  #scheduleCacheWrite(): void {
    this.#cacheDirty = true;
    if (this.#cacheTimer !== undefined || this.#cacheWrite !== undefined || this.#stop.signal.aborted) return;
    const wait = Math.max(
      0,
      this.#lastCacheWrite + (this.#options.cacheIntervalMs ?? 1000) - performance.now(),
    );
    this.#cacheTimer = setTimeout(() => {
      this.#cacheTimer = undefined;
      this.#cacheWrite = this.#writeCache().finally(() => {
        this.#cacheWrite = undefined;
        if (this.#cacheDirty && !this.#stop.signal.aborted) this.#scheduleCacheWrite();
      });
    }, wait);
    // A pending cache write alone should not keep the process alive; close() flushes it.
    this.#cacheTimer.unref();
  }

  async #writeCache(): Promise<void> {
    this.#cacheDirty = false;
    this.#lastCacheWrite = performance.now();
    const cache = this.#lastGood;
    if (cache === undefined) return;
    // Write then rename, so a crash mid-write never leaves a half file where the cache was.
    const temp = `${this.#cacheFile}.${process.pid}.tmp`;
    try {
      await mkdir(this.#options.dataDir, { recursive: true });
      // Private: consumers carry HS256 secrets.
      await writeFile(temp, JSON.stringify(cache), { mode: 0o600 });
      await rename(temp, this.#cacheFile);
    } catch (err) {
      this.#logger.warn("cannot write the gateway cache; a restart during an outage would start empty", {
        file: this.#cacheFile,
        error: err,
      });
    }
  }
}

function valuesOf<T>(map: Map<string, StoredObject>): T[] {
  const out: T[] = [];
  for (const object of map.values()) out.push(object.value as T);
  return out;
}

/** Checks the shape of a snapshot (or cache) body: it crosses a boundary. */
function parseSnapshot(body: unknown): CacheFile {
  const candidate = body as Partial<CacheFile> | null;
  if (typeof candidate?.revision !== "number" || !Array.isArray(candidate.items)) {
    throw new Error("expected {revision: number, items: StoredObject[]}");
  }
  const items = candidate.items.filter(
    (item): item is StoredObject =>
      typeof item === "object" &&
      item !== null &&
      typeof item.key === "string" &&
      typeof item.kind === "string" &&
      typeof item.value === "object" &&
      item.value !== null,
  );
  const secrets = candidate.jwtSecrets;
  const jwtSecrets =
    typeof secrets === "object" && secrets !== null
      ? Object.fromEntries(Object.entries(secrets).filter(([, v]) => typeof v === "string"))
      : undefined;
  return { revision: candidate.revision, items, ...(jwtSecrets ? { jwtSecrets } : {}) };
}

async function errorText(res: ApiAnswer): Promise<string> {
  const text = await res.text().catch(() => "");
  return text.slice(0, 300) || res.statusText;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause ? `${err.message} (${cause.code ?? cause.message})` : err.message;
}
