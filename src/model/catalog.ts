/**
 * The asset catalog's wire types (GET /api/v1/catalog/...): what each app is
 * made of (releases, slugs, the npm packages in them), where it runs, who owns
 * it and what it talks to. The packages of a slug are recorded when it is
 * built (src/catalog/lockfile.ts) and kept beside it in the artifact store.
 */

/** One npm package a slug ships, as npm recorded it. */
export interface PackageRef {
  name: string;
  version: string;
}

/** What a build recorded about the packages in its slug. */
export interface SlugPackages {
  /** The lockfile the source carried (`package-lock.json`, `npm-shrinkwrap.json`); null: none. */
  lockfile: string | null;
  /**
   * Where the list was read: `node_modules/.package-lock.json` (npm's record of what it
   * installed), else the lockfile without its dev packages; null: nothing was installed.
   */
  from: string | null;
  /** Unique by name and version, sorted. */
  packages: PackageRef[];
}

/** How many instances of a release run where (node null: not placed yet). */
export interface ReleasePlacement {
  service: string;
  node: string | null;
  /** Instances that should run (desired running). */
  instances: number;
  /** Of those, in state running (healthy, taking traffic). */
  running: number;
}

/** One release of an app in the catalog. */
export interface CatalogRelease {
  version: number;
  createdAt: string;
  description: string;
  /** The release serving now (the app's release). */
  current: boolean;
  rollbackOf?: number;
  /** sha256 of the uploaded source and of the slug the agents run. */
  source: string;
  slug: string;
  services: string[];
  /** Who made it (the release records it; older releases: from the audit trail, kept 90 days); null when neither tells. */
  deployedBy: string | null;
  /** The slug's packages (count only; the list at .../releases/:version/packages); null: unknown (built before herd recorded them). */
  packages: { lockfile: string | null; from: string | null; count: number } | null;
  /**
   * How its packages differ from the release before it in the list (package versions
   * added and removed; an upgrade is one of each); null when either list is unknown or
   * there is no release before it.
   */
  changes: { against: number; added: number; removed: number } | null;
  /** Where it runs now; empty when no instance of it is wanted. */
  runs: ReleasePlacement[];
  /** The secret versions it pinned (names and versions, never values). */
  secrets?: Record<string, number>;
}

/** A call between two services seen in the traces (`app/service` names; `gateway` for routed requests). */
export interface ObservedCall {
  from: string;
  to: string;
  calls: number;
  /** Calls per second over the window. */
  rate: number;
  errors: number;
  errorRate: number;
  /** µs. */
  p99: number;
}

/** The dependency map's edges that start or end at one of the app's services. */
export interface ObservedDependencies {
  /** The window, e.g. `15m`. */
  window: string;
  calls: ObservedCall[];
}

/** GET /catalog/apps/:app: one app's entry. */
export interface CatalogApp {
  tenant: string;
  app: string;
  createdAt: string;
  /** The release serving now (null before the first successful deploy). */
  release: number | null;
  /** Members of the tenant with the owner role. */
  owners: string[];
  /** Everyone who made one of its releases (the audit trail's actors), most recent first. */
  deployers: string[];
  /** Newest first. */
  releases: CatalogRelease[];
  /**
   * Calls to and from its services seen in the traces; null with `observedError`
   * when the trace store could not answer. herd.yaml declares no dependencies today.
   */
  dependencies: { observed: ObservedDependencies | null; observedError?: string };
}

/** GET /catalog/apps: one line per app. */
export interface CatalogAppSummary {
  tenant: string;
  app: string;
  release: number | null;
  /** The serving release's slug. */
  slug: string | null;
  /** How many packages the serving release's slug ships; null: unknown (or no release). */
  packages: number | null;
  /** Instances wanted running, of every release, and how many run. */
  instances: number;
  running: number;
  nodes: string[];
  owners: string[];
}

/** GET /catalog/apps/:app/releases/:version/packages. */
export interface ReleasePackages {
  tenant: string;
  app: string;
  release: number;
  slug: string;
  /** null: unknown (built before herd recorded packages). */
  packages: SlugPackages | null;
  /** With `?against=N`: the package versions added and removed since release N; null when either list is unknown. */
  changes?: PackageChanges | null;
}

/** The difference between two releases' packages, by name and version. */
export interface PackageChanges {
  against: number;
  added: PackageRef[];
  removed: PackageRef[];
}

/** One release that ships a package the search asked for. */
export interface PackageMatch {
  tenant: string;
  app: string;
  release: number;
  /** The app's serving release. */
  current: boolean;
  /** Instances of the release wanted running, and running. */
  instances: number;
  running: number;
  nodes: string[];
  package: PackageRef;
}

/** GET /catalog/packages?name=&version=: which apps ship a package. */
export interface PackageSearch {
  name: string;
  /** The version or semver range asked for; absent: any. */
  version?: string;
  /** Whether every release was searched, or only those in service (serving, or with instances). */
  all: boolean;
  items: PackageMatch[];
  /** Releases searched whose packages are unknown (built before herd recorded them). */
  unknown: { tenant: string; app: string; release: number }[];
}
