/**
 * An add-on: a managed database herd runs as a pet app of the tenant (the
 * app has the add-on's name), and the apps bound to it. Store key
 * `<tenant>/<name>`. Credentials are never here: each binding's URL is the
 * bound app's secret `var`, the server's admin password the add-on app's
 * secret ADDON_PASSWORD (src/secrets/).
 */

export const ADDON_KINDS = ["postgres", "redis"] as const;
export type AddonKind = (typeof ADDON_KINDS)[number];

/** Plans in resource units (the platform's unit size): memory and CPU of the server. */
export const ADDON_PLANS: Record<string, { units: number; maxConnections: number }> = {
  small: { units: 1, maxConnections: 20 },
  medium: { units: 2, maxConnections: 50 },
  large: { units: 4, maxConnections: 100 },
};

export interface AddonBinding {
  app: string;
  /** The env variable (and secret name) that carries the URL, e.g. DATABASE_URL. */
  var: string;
  /** The database role and database made for this binding. */
  user: string;
  database: string;
  createdAt: string;
  /** Postgres after a rotation: the role its URL logs in with (a member of `user` acting as it). */
  login?: string;
  /** How many times its credentials were rotated. */
  rotation?: number;
  /** Old credentials to revoke once the release with the new URL has rolled out (no password is kept). */
  revoke?: {
    /** The deploy that rolls the new URL out; revoked when it has finished. */
    afterDeploy?: string;
    since: string;
    login?: string;
    passwordSha256?: string;
  };
}

export interface Addon {
  tenant: string;
  name: string;
  kind: AddonKind;
  plan: string;
  createdAt: string;
  /** Where the server answered last (host:port of its running instance); bindings' URLs use it. */
  endpoint?: string;
  bindings: AddonBinding[];
  /** Backups (newest last; the last `backupPolicy.keep`, default 10, kept), stored as artifacts. */
  backups?: AddonBackup[];
  /** Backups on a schedule: a cron expression (UTC) and how many to keep. */
  backupPolicy?: AddonBackupPolicy;
  /** When the last scheduled backup was due (ISO); the next one is the schedule's next time after it. */
  lastScheduledAt?: string;
}

export interface AddonBackupPolicy {
  schedule: string;
  keep: number;
}

/** Backups kept when no policy says. */
export const DEFAULT_BACKUP_KEEP = 10;

export interface AddonBackup {
  id: string;
  createdAt: string;
  /** sha256 of the dump in the artifact store. */
  digest: string;
  size: number;
  /** postgres: the bound databases dumped; redis: empty (the whole keyspace). */
  databases: string[];
  /** pg_dump (SQL, postgres) or rdb (a Redis snapshot); absent: pg_dump. */
  format?: "pg_dump" | "rdb";
  /** Why it was taken: on demand, by the schedule, or the last one before a destroy. */
  reason?: "manual" | "scheduled" | "final";
}

export const addonKey = (tenant: string, name: string): string => `${tenant}/${name}`;
