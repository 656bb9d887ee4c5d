/**
 * What differs between kinds of add-on: finding the software, the source of
 * the server's app, readiness, and making or dropping a binding's account.
 */

import { HerdError } from "../common/errors.ts";
import {
  addLogin,
  databaseUrl,
  dropBinding,
  ensurePostgres,
  postgresSource,
  provisionBinding,
  revokeLogin,
  waitReady,
} from "./postgres.ts";
import {
  ensureRedis,
  redisAddPassword,
  redisDrop,
  redisProvision,
  redisReady,
  redisRevokePassword,
  redisSource,
  redisUrl,
} from "./redis.ts";

/** The add-on app's secret holding its server's admin password. */
export const ADMIN_SECRET = "ADDON_PASSWORD";

export interface Account {
  user: string;
  database: string;
  password: string;
}

export interface KindDriver {
  /** The env variable a binding gets by default. */
  defaultVar: string;
  /** Finds (or installs) the software; fails naming what is missing. */
  install(): Promise<void>;
  source(dir: string, o: { name: string; units: number; maxConnections: number }): Promise<void>;
  ready(endpoint: string, admin: string, timeoutMs: number): Promise<void>;
  provision(endpoint: string, admin: string, a: Account): Promise<void>;
  drop(endpoint: string, admin: string, a: Omit<Account, "password"> & { login?: string }): Promise<void>;
  /** The user in URLs: postgres logs in with `login` (a rotation's role), redis always with `user`. */
  url(a: Account, endpoint: string): string;
  /**
   * Rotation, first step: new credentials that work beside the old ones.
   * Returns the account for the URL and what `revoke` later needs (no password).
   */
  rotate(
    endpoint: string,
    admin: string,
    b: { user: string; database: string; login?: string; rotation: number },
    password: string,
  ): Promise<{ account: Account; login?: string; revoke: PendingRevoke }>;
  /** Rotation, last step (the bound app runs the new URL): the old credentials stop working. */
  revoke(endpoint: string, admin: string, user: string, r: PendingRevoke): Promise<void>;
}

/** What revoking old credentials needs: a login role's name, or a password's SHA-256. */
export interface PendingRevoke {
  login?: string;
  passwordSha256?: string;
}

function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    p ??= f().catch((err) => {
      p = undefined;
      throw err;
    });
    return p;
  };
}

const pg = once(ensurePostgres);
const redis = once(ensureRedis);

export const KIND_DRIVERS: Record<string, KindDriver> = {
  postgres: {
    defaultVar: "DATABASE_URL",
    install: async () => void (await pg()),
    source: async (dir, o) => postgresSource(dir, { ...o, ...(await pg()) }),
    ready: async (endpoint, _admin, ms) => waitReady((await pg()).bin, endpoint, ms),
    provision: async (endpoint, admin, a) => provisionBinding((await pg()).bin, endpoint, admin, a),
    drop: async (endpoint, admin, a) => dropBinding((await pg()).bin, endpoint, admin, a),
    url: databaseUrl,
    rotate: async (endpoint, admin, b, password) => {
      const login = `${b.user}_r${b.rotation}`;
      await addLogin((await pg()).bin, endpoint, admin, { user: b.user, login, password });
      return {
        account: { user: login, database: b.database, password },
        login,
        revoke: { login: b.login ?? b.user },
      };
    },
    revoke: async (endpoint, admin, user, r) =>
      revokeLogin((await pg()).bin, endpoint, admin, { user, login: r.login ?? user }),
  },
  redis: {
    defaultVar: "REDIS_URL",
    install: async () => void (await redis()),
    source: async (dir, o) => redisSource(dir, { ...o, ...(await redis()) }),
    ready: async (endpoint, admin, ms) => redisReady((await redis()).cli, endpoint, admin, ms),
    provision: async (endpoint, admin, a) => redisProvision((await redis()).cli, endpoint, admin, a),
    drop: async (endpoint, admin, a) => redisDrop((await redis()).cli, endpoint, admin, a),
    url: redisUrl,
    rotate: async (endpoint, admin, b, password) => {
      await redisAddPassword((await redis()).cli, endpoint, admin, { user: b.user, password });
      return { account: { user: b.user, database: b.database, password }, revoke: {} };
    },
    revoke: async (endpoint, admin, user, r) => {
      if (r.passwordSha256)
        await redisRevokePassword((await redis()).cli, endpoint, admin, {
          user,
          passwordSha256: r.passwordSha256,
        });
    },
  },
};

/** The driver of herd's own add-on kind. */
export function driverOf(a: { kind: string }): KindDriver {
  const d = KIND_DRIVERS[a.kind];
  if (!d) throw new HerdError("internal", `no driver for add-on kind ${a.kind}`);
  return d;
}
