/**
 * Which Store a server uses: `--store` names it. Omitted or `sqlite`: the
 * embedded SQLite file in the data dir (the default); `etcd://host:port,…`:
 * an etcd cluster (etcd-store.ts, docs/etcd.md).
 */

import { join } from "node:path";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import { EtcdLeadership, type Leadership, SoleLeadership } from "./leadership.ts";
import { SqliteStore } from "./sqlite-store.ts";
import type { Store } from "./store.ts";

/** Opens the store `spec` names; throws `invalid` for an unknown one, `unavailable` when etcd does not answer. */
export async function openStore(spec: string | undefined, dataDir: string): Promise<Store> {
  if (spec === undefined || spec === "sqlite") return SqliteStore.open(join(dataDir, "state.db"));
  if (spec.startsWith("etcd://")) {
    const { EtcdStore, parseEtcdUrl } = await import("./etcd-store.ts");
    return EtcdStore.open(parseEtcdUrl(spec));
  }
  throw new HerdError("invalid", `--store must be sqlite or etcd://host:port[,host:port…], got ${spec}`);
}

/** Who leads among the servers sharing `store`: an etcd election, or this server alone on SQLite. */
export function openLeadership(store: Store, logger: Logger, ttlSeconds?: number): Leadership {
  const connection = (store as { connection?: () => { client: import("etcd3").Etcd3; root: string } })
    .connection;
  if (!connection) return new SoleLeadership();
  return new EtcdLeadership({ ...connection.call(store), logger, ...(ttlSeconds ? { ttlSeconds } : {}) });
}
