/**
 * Pure logic over versions: the effective config of an app version merged
 * over the lower layers it pins, the diff of two versions, and which
 * instances a gray release reaches.
 */

import { createHash } from "node:crypto";
import type { ConfigEntry, ConfigVersion, EffectiveConfig, GrayTarget, LayerUses } from "../model/config.ts";

/** How a version names itself as an origin: `platform base@3`, `middleware redis@1`, `app v7`. */
export function originOf(v: Pick<ConfigVersion, "layer" | "namespace" | "version">): string {
  return v.layer === "app" ? `app v${v.version}` : `${v.layer} ${v.namespace}@${v.version}`;
}

/**
 * The effective config of `app` merged over `lower` (platform first, then
 * middleware in the order the app pinned them): a later layer's entry
 * replaces an earlier one of the same name, and says so in `origins`.
 */
export function mergeLayers(
  app: ConfigVersion,
  lower: ConfigVersion[],
  tenant: string,
  appName: string,
): EffectiveConfig {
  const values: EffectiveConfig["values"] = {};
  const files: EffectiveConfig["files"] = {};
  const origins: EffectiveConfig["origins"] = {};
  for (const layer of [...lower, app]) {
    for (const [name, entry] of Object.entries(layer.entries)) {
      delete values[name];
      delete files[name];
      if (entry.kind === "key") values[name] = entry.value;
      else files[name] = { format: entry.format, content: entry.content };
      origins[name] = originOf(layer);
    }
  }
  return { tenant, app: appName, version: app.version, values, files, origins };
}

/** The lower-layer versions `uses` names, in merge order. */
export function lowerRefs(
  uses: LayerUses | undefined,
): { layer: "platform" | "middleware"; name: string; version: number }[] {
  return [
    ...(uses?.platform ? [{ layer: "platform" as const, ...uses.platform }] : []),
    ...(uses?.middleware ?? []).map((m) => ({ layer: "middleware" as const, ...m })),
  ];
}

/** One line of a diff. */
export interface EntryChange {
  name: string;
  change: "added" | "removed" | "changed";
  before?: ConfigEntry;
  after?: ConfigEntry;
}

/** What changed from `a` to `b`, by entry name; uses changes as `@platform` / `@middleware`. */
export function diffVersions(
  a: Pick<ConfigVersion, "entries" | "uses">,
  b: Pick<ConfigVersion, "entries" | "uses">,
): EntryChange[] {
  const changes: EntryChange[] = [];
  const names = [...new Set([...Object.keys(a.entries), ...Object.keys(b.entries)])].sort();
  for (const name of names) {
    const before = a.entries[name];
    const after = b.entries[name];
    if (before && !after) changes.push({ name, change: "removed", before });
    else if (!before && after) changes.push({ name, change: "added", after });
    else if (before && after && JSON.stringify(before) !== JSON.stringify(after))
      changes.push({ name, change: "changed", before, after });
  }
  const ref = (r: { name: string; version: number } | undefined) => (r ? `${r.name}@${r.version}` : "");
  const uses = (u: LayerUses | undefined) => ({
    platform: ref(u?.platform),
    middleware: (u?.middleware ?? []).map(ref).join(","),
  });
  const ua = uses(a.uses);
  const ub = uses(b.uses);
  for (const layer of ["platform", "middleware"] as const) {
    if (ua[layer] === ub[layer]) continue;
    const name = `@${layer}`;
    const before = ua[layer] ? { kind: "key" as const, value: ua[layer] } : undefined;
    const after = ub[layer] ? { kind: "key" as const, value: ub[layer] } : undefined;
    changes.push({
      name,
      change: before && after ? "changed" : before ? "removed" : "added",
      ...(before ? { before } : {}),
      ...(after ? { after } : {}),
    });
  }
  return changes;
}

/** An instance as gray selection sees it. */
export interface GrayCandidate {
  id: string;
  service: string;
  /** Its node's labels. */
  labels: Record<string, string>;
}

/**
 * The ids of the instances a gray release of `version` reaches: named ones,
 * those whose node has every label (`service=<name>` matches the service),
 * and a share of the rest. The share is the first ⌈share × n⌉ of all the
 * app's instances ranked by a hash of version and id, so the same instances
 * stay in as others come and go, and a new gray version picks afresh.
 */
export function grayMembers(target: GrayTarget, version: number, instances: GrayCandidate[]): Set<string> {
  const members = new Set<string>();
  for (const i of instances) {
    if (target.instances?.includes(i.id)) members.add(i.id);
    const labels = target.labels;
    if (labels && Object.keys(labels).length > 0) {
      const all: Record<string, string> = { ...i.labels, service: i.service };
      if (Object.entries(labels).every(([k, v]) => all[k] === v)) members.add(i.id);
    }
  }
  if (target.share !== undefined && target.share > 0) {
    const count = Math.ceil((target.share / 100) * instances.length - 1e-9);
    const ranked = instances
      .map((i) => ({ id: i.id, rank: createHash("sha256").update(`${version}/${i.id}`).digest("hex") }))
      .sort((x, y) => (x.rank < y.rank ? -1 : x.rank > y.rank ? 1 : 0));
    for (const r of ranked.slice(0, count)) members.add(r.id);
  }
  return members;
}
