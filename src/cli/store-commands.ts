/**
 * `herd migrate`, `herd backup`, `herd restore`: a store's objects moved or
 * kept, run on a server's machine against its data dir and store
 * (store/copy.ts, docs/high-availability.md). They talk to the stores
 * directly, not to the API.
 */

import { join, resolve } from "node:path";
import { backupStore, copyStore, restoreStore } from "../store/copy.ts";
import { ETCD_TLS_HELP, ETCD_TLS_OPTIONS, etcdTlsOf } from "../store/etcd-flags.ts";
import { openStoreSpec } from "../store/open.ts";
import type { Store } from "../store/store.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";

const STORE_FLAGS: [string, string][] = [
  ["--data DIR", "the server's data dir (default .herd): its state.db, artifacts and secrets.key"],
  ["--store S", "the server's store: sqlite:PATH or etcd://HOST:PORT,...[/root] (default: DIR/state.db)"],
  ["--artifacts DIR", "the servers' artifacts dir, when given to herd server (default DIR/artifacts)"],
  ...ETCD_TLS_HELP,
];
const STORE_OPTIONS = {
  data: { type: "string" },
  store: { type: "string" },
  artifacts: { type: "string" },
  ...ETCD_TLS_OPTIONS,
} as const;

/** The data dir, store and artifacts dir the flags name. */
function placesOf(values: Record<string, unknown>): {
  dataDir: string;
  store?: string;
  artifactsDir: string;
} {
  const dataDir = resolve((values.data as string | undefined) ?? ".herd");
  const artifacts = values.artifacts as string | undefined;
  return {
    dataDir,
    ...(typeof values.store === "string" ? { store: values.store } : {}),
    artifactsDir: artifacts ? resolve(artifacts) : join(dataDir, "artifacts"),
  };
}

async function closing<R>(stores: Store[], work: () => Promise<R>): Promise<R> {
  try {
    return await work();
  } finally {
    for (const s of stores) await s.close();
  }
}

/** `herd migrate --from sqlite:PATH --to etcd://...`. */
export const migrateCommand: CommandSpec = {
  name: "migrate",
  usage: "herd migrate --from sqlite:PATH --to etcd://HOST:PORT,...[/root] [--etcd-ca FILE ...]",
  summary:
    "Copy every object of one store into another, empty one (one revision of the source, so a running\n" +
    "server may keep writing meanwhile; stop it before you switch). Then start the servers with\n" +
    "--store etcd://... and copy the data dir's secrets.key and artifacts/ to each\n" +
    "(docs/high-availability.md).",
  flags: [
    ["--from S", "the store to read: sqlite:PATH (state.db, or a data dir) or etcd://..."],
    ["--to S", "the empty store to write: etcd://... or sqlite:PATH"],
    ...ETCD_TLS_HELP.map(([flag, text]): [string, string] => [flag, `${text} (for the etcd store named)`]),
  ],
  options: { from: { type: "string" }, to: { type: "string" }, ...ETCD_TLS_OPTIONS },
  async run(ctx, values) {
    const from = stringFlag(values, "from");
    const to = stringFlag(values, "to");
    if (!from || !to) throw new UsageError("herd migrate needs --from and --to");
    const tls = etcdTlsOf(values, ctx.cwd);
    if (tls && !from.startsWith("etcd://") && !to.startsWith("etcd://"))
      throw new UsageError("--etcd-ca, --etcd-cert and --etcd-key go with an etcd://… store");
    // The TLS flags are for the etcd store (or both, when both are etcd).
    const tlsFor = (spec: string) => (spec.startsWith("etcd://") ? tls : undefined);
    const source = await openStoreSpec(from, ctx.cwd, true, tlsFor(from));
    const target = await openStoreSpec(to, ctx.cwd, false, tlsFor(to)).catch(async (err) => {
      await source.close();
      throw err;
    });
    return closing([source, target], async () => {
      const result = await copyStore(source, target, (done, total) => {
        if (!values.json) ctx.stderr.write(`\r${done}/${total} objects`);
      });
      if (values.json) printJson(ctx.stdout, result);
      else {
        ctx.stderr.write("\n");
        println(
          ctx.stdout,
          `migrated ${result.objects} objects (revision ${result.revision} of ${from}) to ${to}`,
        );
      }
      return 0;
    });
  },
};

/** `herd backup --out DIR`. */
export const backupCommand: CommandSpec = {
  name: "backup",
  usage: "herd backup --out DIR [--data DIR] [--store S] [--artifacts DIR] [--etcd-ca FILE ...]",
  summary:
    "Write a consistent snapshot of the store (one revision, while servers run), the artifacts and\n" +
    "the secrets key into a new directory. Keep it as safe as the data dir: it holds the key.",
  flags: [["--out DIR", "a new or empty directory for the backup"], ...STORE_FLAGS],
  options: { out: { type: "string" }, ...STORE_OPTIONS },
  async run(ctx, values) {
    const out = stringFlag(values, "out");
    if (!out) throw new UsageError("herd backup needs --out DIR");
    const places = placesOf(values);
    const store = await openStoreSpec(places.store, places.dataDir, true, etcdTlsOf(values, ctx.cwd));
    return closing([store], async () => {
      const header = await backupStore({ ...places, store, out: resolve(ctx.cwd, out) });
      if (values.json) printJson(ctx.stdout, header);
      else
        println(ctx.stdout, `backed up ${header.objects} objects at revision ${header.revision} to ${out}`);
      return 0;
    });
  },
};

/** `herd restore --from DIR`. */
export const restoreCommand: CommandSpec = {
  name: "restore",
  usage: "herd restore --from DIR [--data DIR] [--store S] [--artifacts DIR] [--etcd-ca FILE ...]",
  summary:
    "Read a backup into an empty store (a new data dir, or an unused etcd root), its artifacts into\n" +
    "the artifacts dir and its secrets key into the data dir. Start the server(s) afterwards.",
  flags: [["--from DIR", "the backup (herd backup --out)"], ...STORE_FLAGS],
  options: { from: { type: "string" }, ...STORE_OPTIONS },
  async run(ctx, values) {
    const from = stringFlag(values, "from");
    if (!from) throw new UsageError("herd restore needs --from DIR");
    const places = placesOf(values);
    const store = await openStoreSpec(places.store, places.dataDir, false, etcdTlsOf(values, ctx.cwd));
    return closing([store], async () => {
      const header = await restoreStore({ ...places, store, from: resolve(ctx.cwd, from) });
      if (values.json) printJson(ctx.stdout, header);
      else
        println(
          ctx.stdout,
          `restored ${header.objects} objects (backup of ${header.createdAt}) from ${from}`,
        );
      return 0;
    });
  },
};
