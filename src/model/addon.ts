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
  /** A broker's add-on: the binding's id at the broker, and every variable its credentials became. */
  bindingId?: string;
  vars?: string[];
  /** A broker's add-on: the bind parameters (checked against the plan's binding schema), sent again on rotation. */
  parameters?: Record<string, unknown>;
  /** A broker binding being rotated: the new binding's id, kept before the broker is asked (a crash rolls it forward). */
  rotating?: { bindingId: string; since: string };
  /** Old credentials to revoke once the release with the new URL has rolled out (no password is kept). */
  revoke?: {
    /** A broker's add-on: the old binding, unbound then. */
    bindingId?: string;
    /** The deploy that rolls the new URL out; revoked when it has finished. */
    afterDeploy?: string;
    /** The release was asked for and none was needed (the app has no release); absent with no afterDeploy: not asked yet. */
    released?: boolean;
    since: string;
    login?: string;
    passwordSha256?: string;
  };
}

export interface Addon {
  tenant: string;
  name: string;
  /** postgres, redis, or the service's name in an external broker's catalog (`broker` then says which). */
  kind: string;
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
  /** An add-on an external Open Service Broker runs (addons/brokers.ts): no server of herd's. */
  broker?: BrokerInstance;
  /** herd's own add-on: a plan change rolling out (kept before the deploy; the timer finishes or undoes it). */
  planChange?: { from: string; since: string; deploy?: string };
  /** herd's own add-on: bindings detached from their apps whose database and role are not dropped yet. */
  detached?: DetachedBinding[];
}

/**
 * A binding detached from its app: its database and role are dropped once
 * the release without its URL has rolled out (addons/detach.ts); until then
 * the app's running instances still use them.
 */
export interface DetachedBinding extends Pick<AddonBinding, "app" | "var" | "user" | "database" | "login"> {
  /** The deploy that takes the URL away; the drop waits until it has finished. */
  afterDeploy?: string;
  /** No release was needed (the app has none); absent with no afterDeploy: not asked yet. */
  released?: boolean;
  since: string;
  /** postgres: the backup of its database taken before the drop (its id); a crash after it takes no second one. */
  backup?: string;
  /** Dropped without a backup (`detach --without-backup`). */
  withoutBackup?: boolean;
}

/** A service instance at an external broker, and where its (maybe asynchronous) operation stands. */
export interface BrokerInstance {
  /** The broker's name in herd (kind `addon_broker`). */
  name: string;
  serviceId: string;
  planId: string;
  /** The instance's id at the broker (herd makes it). */
  instanceId: string;
  /** The broker is the add-on's tenant's own (kind `addon_broker`, key `<tenant>/<name>`), not a platform one. */
  tenantBroker?: boolean;
  state: "provisioning" | "ready" | "failed" | "deprovisioning" | "updating";
  /** The broker's operation handle of a pending asynchronous provision, update or deprovision. */
  operation?: string;
  /** A plan change asked of the broker (kept before asking; `sent` once it answered). */
  update?: {
    planId: string;
    plan: string;
    since: string;
    sent?: boolean;
    parameters?: Record<string, unknown>;
  };
  /** The provision's parameters (checked against the plan's schema), kept to send a lost provision again. */
  parameters?: Record<string, unknown>;
  message?: string;
  dashboardUrl?: string;
}

/**
 * An Open Service Broker herd knows; its password is in the secret store
 * (`_herd` or its tenant, scope `_broker.<name>`). Platform-wide (key
 * `<name>`), or one tenant's own (`tenant` set, key `<tenant>/<name>`).
 */
export interface AddonBroker {
  name: string;
  /** Only this tenant sees and uses it (registered by its owner). */
  tenant?: string;
  url: string;
  user?: string;
  createdAt: string;
  createdBy: string;
  /** The broker's catalog as last fetched. */
  services: {
    id: string;
    name: string;
    description: string;
    bindable: boolean;
    /** Its instances may change plan (PATCH); a plan's own `planUpdateable` wins. */
    planUpdateable?: boolean;
    plans: BrokerPlanEntry[];
  }[];
  catalogAt: string;
}

/** A plan of a broker's service, with the JSON Schemas its parameters must meet (when the broker gives them). */
export interface BrokerPlanEntry {
  id: string;
  name: string;
  description: string;
  free?: boolean;
  planUpdateable?: boolean;
  /** The parameters of a provision (`create`), of an update (`update`) and of a binding (`bind`). */
  schemas?: {
    create?: Record<string, unknown>;
    update?: Record<string, unknown>;
    bind?: Record<string, unknown>;
  };
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
  /** Why it was taken: on demand, by the schedule, the last one before a destroy, or before a detached app's database was dropped. */
  reason?: "manual" | "scheduled" | "final" | "detach";
  /** detach: the app whose database it holds. */
  app?: string;
}

/**
 * A destroyed add-on's final backup (store kind `addon_backup`, key
 * `<tenant>/<id>`): the add-on is gone, this stays until deleted, listed by
 * `herd addons final-backups` and restored by `create --from-backup ID`.
 */
export interface FinalAddonBackup extends AddonBackup {
  tenant: string;
  /** The destroyed add-on's name, kind and plan. */
  addon: string;
  kind: string;
  plan: string;
  /** The apps it was bound to, with their databases (postgres). */
  apps: string[];
  destroyedAt: string;
  destroyedBy: string;
}

/** GET /addons/:addon: the add-on with its server's state (a broker's: the broker's state), instance and node. */
export type AddonInfo = Addon & { state: string; instance?: string; node?: string | null };

export const addonKey = (tenant: string, name: string): string => `${tenant}/${name}`;
