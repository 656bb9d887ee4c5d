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
  /** Dumps taken by `herd addons backup` (newest last, the last 10 kept), stored as artifacts. */
  backups?: AddonBackup[];
}

export interface AddonBackup {
  id: string;
  createdAt: string;
  /** sha256 of the dump in the artifact store. */
  digest: string;
  size: number;
  databases: string[];
}

export const addonKey = (tenant: string, name: string): string => `${tenant}/${name}`;
