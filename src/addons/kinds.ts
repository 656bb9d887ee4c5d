/**
 * What differs between kinds of add-on: finding the software, the source of
 * the server's app, readiness, and making or dropping a binding's account.
 */

import {
  databaseUrl,
  dropBinding,
  ensurePostgres,
  postgresSource,
  provisionBinding,
  waitReady,
} from "./postgres.ts";
import { ensureRedis, redisDrop, redisProvision, redisReady, redisSource, redisUrl } from "./redis.ts";

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
  drop(endpoint: string, admin: string, a: Omit<Account, "password">): Promise<void>;
  url(a: Account, endpoint: string): string;
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
  },
  redis: {
    defaultVar: "REDIS_URL",
    install: async () => void (await redis()),
    source: async (dir, o) => redisSource(dir, { ...o, server: (await redis()).server }),
    ready: async (endpoint, admin, ms) => redisReady((await redis()).cli, endpoint, admin, ms),
    provision: async (endpoint, admin, a) => redisProvision((await redis()).cli, endpoint, admin, a),
    drop: async (endpoint, admin, a) => redisDrop((await redis()).cli, endpoint, admin, a),
    url: redisUrl,
  },
};
