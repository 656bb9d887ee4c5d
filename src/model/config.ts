/**
 * The config center's wire types (src/config-center/, docs/config.md).
 *
 * Three layers, each a set of versioned namespaces:
 *   platform   `platform/<name>`       a platform admin's machine and runtime settings
 *   middleware `middleware/<name>`     settings of add-ons and shared services
 *   app        `app/<tenant>/<app>`    the app's own keys and files
 * An app version pins at most one platform version and any middleware
 * versions (`uses`), chosen from the catalog; the effective config is
 * platform < middleware (in order) < app, each key telling where it came from.
 *
 * Store keys:
 *   config_version  `<layer>/<name>/<version padded to 8 digits>`   (app: name = `<tenant>/<app>`)
 *   config_head     `<tenant>/<app>`: which app version is stable and which one is gray
 */

/** A layer of the config center. */
export type ConfigLayer = "platform" | "middleware" | "app";

/** The layers of the catalog: shared namespaces apps pin a version of. */
export const CATALOG_LAYERS = ["platform", "middleware"] as const;
export type CatalogLayer = (typeof CATALOG_LAYERS)[number];

/** One catalog namespace and its versions (GET /config/catalog). */
export interface CatalogNamespace {
  layer: CatalogLayer;
  name: string;
  versions: number[];
}

/** How a file entry is parsed to be checked (text: not at all). */
export type ConfigFormat = "json" | "yaml" | "properties" | "text";
export const CONFIG_FORMATS: readonly ConfigFormat[] = ["json", "yaml", "properties", "text"];

/** The format a file name suggests (by its extension); text when none fits. */
export function formatOfName(name: string): ConfigFormat {
  const ext = name.slice(name.lastIndexOf(".") + 1).toLowerCase();
  if (ext === "json") return "json";
  if (ext === "yaml" || ext === "yml") return "yaml";
  if (ext === "properties") return "properties";
  return "text";
}

/** One entry of a namespace: a key with a string value, or a whole file. */
export type ConfigEntry =
  | { kind: "key"; value: string }
  | { kind: "file"; format: ConfigFormat; content: string };

/** A version of a lower layer's namespace, as an app version pins it. */
export interface LayerRef {
  name: string;
  version: number;
}

/** The lower-layer versions an app version is merged over. */
export interface LayerUses {
  platform?: LayerRef;
  middleware?: LayerRef[];
}

/** One immutable version of a namespace: every entry it holds, and who made it and why. */
export interface ConfigVersion {
  layer: ConfigLayer;
  /** The namespace: a catalog name, or `<tenant>/<app>` for the app layer. */
  namespace: string;
  version: number;
  entries: Record<string, ConfigEntry>;
  /** App layer only: the lower-layer versions it is merged over. */
  uses?: LayerUses;
  /** The principal's label (`user alice`). */
  author: string;
  message: string;
  createdAt: string;
  /** Set when this version restores an older one's content. */
  rollbackOf?: number;
}

/** A version as a history lists it (`GET /apps/:app/config/versions`): who, when, why, how many entries. */
export interface ConfigVersionSummary {
  version: number;
  author: string;
  message: string;
  createdAt: string;
  entries: number;
  uses?: LayerUses;
  rollbackOf?: number;
}

/** Who gets a gray version: a share of the app's instances, named instances, or node labels (any that match). */
export interface GrayTarget {
  /** Percent of the app's instances (1–100), picked by a stable hash of instance id and version. */
  share?: number;
  instances?: string[];
  /** Instances on nodes with all these labels; `service=<name>` matches a service. */
  labels?: Record<string, string>;
}

/** A version given to part of the app's instances before everyone gets it. */
export interface GrayRelease extends GrayTarget {
  version: number;
  startedAt: string;
  by: string;
}

/** An app's config pointers: the version every instance gets, and the one in gray release. */
export interface ConfigHead {
  tenant: string;
  app: string;
  /** 0: no version yet. */
  stable: number;
  gray?: GrayRelease;
}

/** Where an effective key came from: `platform base@3`, `middleware redis@1` or `app v7`. */
export type ConfigOrigin = string;

/** What an instance gets: the merge of its layers at one app version. */
export interface EffectiveConfig {
  tenant: string;
  app: string;
  /** The app version it is built from (the cursor of the feed). */
  version: number;
  values: Record<string, string>;
  files: Record<string, { format: ConfigFormat; content: string }>;
  origins: Record<string, ConfigOrigin>;
}

/** What a service does when its instances' config changes (herd.yaml `config: {onChange}`). */
export type ConfigOnChange = "file" | "signal" | "restart";

/** The config part of a desired instance in the heartbeat reply. */
export interface InstanceConfig {
  version: number;
  onChange: ConfigOnChange;
  /** Present when the agent reported another applied version: the content to apply. */
  document?: EffectiveConfig;
}

export const configVersionKey = (layer: ConfigLayer, namespace: string, version: number): string =>
  `${layer}/${namespace}/${String(version).padStart(8, "0")}`;
export const configHeadKey = (tenant: string, app: string): string => `${tenant}/${app}`;
