/**
 * `--etcd-ca FILE [--etcd-cert FILE --etcd-key FILE]`: TLS to etcd, the same
 * flags for every command that opens an etcd store (`herd server`, `migrate`,
 * `backup`, `restore`). The files are read when the store opens (open.ts).
 */

import { resolve } from "node:path";
import { HerdError } from "../common/errors.ts";
import type { EtcdTlsFiles } from "./open.ts";

/** The flags' definitions for util.parseArgs. */
export const ETCD_TLS_OPTIONS = {
  "etcd-ca": { type: "string" },
  "etcd-cert": { type: "string" },
  "etcd-key": { type: "string" },
} as const;

/** The flags' help lines. */
export const ETCD_TLS_HELP: [string, string][] = [
  ["--etcd-ca FILE", "speak TLS to etcd, verifying its members against this CA (PEM)"],
  ["--etcd-cert FILE", "with --etcd-key: the client certificate shown to etcd"],
  ["--etcd-key FILE", "the client certificate's key"],
];

/** The TLS files the flags name (paths resolved against `cwd`), or undefined without --etcd-ca; a cert or key alone needs the CA. */
export function etcdTlsOf(values: Record<string, unknown>, cwd: string): EtcdTlsFiles | undefined {
  const [ca, cert, key] = [values["etcd-ca"], values["etcd-cert"], values["etcd-key"]] as (
    | string
    | undefined
  )[];
  if (ca === undefined) {
    if (cert !== undefined || key !== undefined)
      throw new HerdError("invalid", "--etcd-cert and --etcd-key need --etcd-ca (the CA of etcd's members)");
    return undefined;
  }
  return {
    ca: resolve(cwd, ca),
    ...(cert !== undefined ? { cert: resolve(cwd, cert) } : {}),
    ...(key !== undefined ? { key: resolve(cwd, key) } : {}),
  };
}
