/**
 * Which Store a server uses: `--store` names it. Omitted or `sqlite`: the
 * embedded SQLite file in the data dir (the default); `etcd://host:port,…`:
 * an etcd cluster (etcd-store.ts, docs/etcd.md).
 */

import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { HerdError } from "../common/errors.ts";
import type { Logger } from "../common/log.ts";
import { EtcdLeadership, type Leadership, SoleLeadership } from "./leadership.ts";
import { SqliteStore } from "./sqlite-store.ts";
import type { Store } from "./store.ts";

/** Files of TLS to etcd (PEM): the members' CA, and this client's certificate and key. */
export interface EtcdTlsFiles {
  ca: string;
  cert?: string;
  key?: string;
}

/**
 * Opens the store `spec` names; throws `invalid` for an unknown one, `unavailable` when etcd does not answer.
 * `logger`: told when an etcd member stops answering its probes and when it is back (etcd-members.ts).
 */
export async function openStore(
  spec: string | undefined,
  dataDir: string,
  etcdTls?: EtcdTlsFiles,
  logger?: Logger,
): Promise<Store> {
  if (etcdTls && !spec?.startsWith("etcd://"))
    throw new HerdError("invalid", "--etcd-ca, --etcd-cert and --etcd-key go with --store etcd://…");
  if (spec === undefined || spec === "sqlite") return SqliteStore.open(join(dataDir, "state.db"));
  if (spec.startsWith("etcd://")) {
    const { EtcdStore, parseEtcdUrl } = await import("./etcd-store.ts");
    return EtcdStore.open({
      ...parseEtcdUrl(spec),
      ...(etcdTls ? { tls: readEtcdTls(etcdTls) } : {}),
      ...(logger
        ? {
            onMemberChange: (member: string, up: boolean, why: string) =>
              up
                ? logger.info("etcd member answers again: calls go to it again", { member })
                : logger.warn("etcd member does not answer: calls keep off it", { member, why }),
          }
        : {}),
    });
  }
  throw new HerdError("invalid", `--store must be sqlite or etcd://host:port[,host:port…], got ${spec}`);
}

/** Reads the TLS files; a missing or unreadable one is `invalid`, naming its flag. */
function readEtcdTls(files: EtcdTlsFiles): { ca: Buffer; cert?: Buffer; key?: Buffer } {
  if ((files.cert === undefined) !== (files.key === undefined))
    throw new HerdError("invalid", "--etcd-cert and --etcd-key go together");
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new HerdError("invalid", `${flag} ${file}: ${(err as Error).message}`);
    }
  };
  return {
    ca: read("--etcd-ca", files.ca),
    ...(files.cert ? { cert: read("--etcd-cert", files.cert) } : {}),
    ...(files.key ? { key: read("--etcd-key", files.key) } : {}),
  };
}

/**
 * Opens a store named as the migrate, backup and restore commands name one:
 * `sqlite:PATH` (a state.db file, or a data dir holding one), `etcd://…`, or
 * undefined for `<dataDir>/state.db`. `mustExist`: a SQLite file that is not
 * there is an error, not a new empty store. `etcdTls`: for an etcd store only.
 */
export async function openStoreSpec(
  spec: string | undefined,
  dataDir: string,
  mustExist: boolean,
  etcdTls?: EtcdTlsFiles,
): Promise<Store> {
  if (spec?.startsWith("etcd://")) return openStore(spec, dataDir, etcdTls);
  if (etcdTls)
    throw new HerdError("invalid", "--etcd-ca, --etcd-cert and --etcd-key go with an etcd://… store");
  let file = join(dataDir, "state.db");
  if (spec !== undefined) {
    if (!spec.startsWith("sqlite:") || spec.length === "sqlite:".length)
      throw new HerdError(
        "invalid",
        `a store is sqlite:PATH or etcd://host:port[,host:port…][/root], got ${spec}`,
      );
    const path = resolve(spec.slice("sqlite:".length));
    file = existsSync(path) && statSync(path).isDirectory() ? join(path, "state.db") : path;
  }
  if (mustExist && !existsSync(file))
    throw new HerdError("not_found", `${file} does not exist: no SQLite store there`);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  return SqliteStore.open(file);
}

/** Who leads among the servers sharing `store`: an etcd election, or this server alone on SQLite. */
export function openLeadership(store: Store, logger: Logger, ttlSeconds?: number): Leadership {
  const connection = (
    store as {
      connection?: () => { client: import("etcd3").Etcd3; members: import("etcd3").Etcd3[]; root: string };
    }
  ).connection;
  if (!connection) return new SoleLeadership();
  return new EtcdLeadership({ ...connection.call(store), logger, ...(ttlSeconds ? { ttlSeconds } : {}) });
}
