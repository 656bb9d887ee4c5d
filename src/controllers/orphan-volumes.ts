/**
 * Pet volumes whose app is gone. A pet's data directory outlives its instance
 * (a scaled-down pet, a pet moved to another node: the copy stays behind), and
 * the stop that removes it reaches only the node the pet is on as its app is
 * destroyed. Agents name the volumes they hold in each heartbeat; those of an
 * app destroyed (its tombstone, AppTombstone) and of none alive now, and of
 * none of this node's instances, are named back to discard. An app merely
 * unknown proves nothing (a control plane restored from an older backup does
 * not know newer apps): its volumes stay.
 *
 * A volume is a pet id: `<app>-<service>-<n>`, or `<tenant>.<app>-<service>-<n>`
 * outside `default` (controllers/service-rules.ts nextPetId). Names hold
 * dashes, so the app is any prefix ending before a dash: the volume is kept
 * while any such app exists in its tenant (never discarded by a guess).
 */

const PET_REST = /^[a-z][a-z0-9-]*-[0-9]+$/;
const TENANT = /^[a-z][a-z0-9-]*$/;
/** A volume another tenant's uid owned, renamed aside by the agent for an admin (agent/sandbox.ts setAsideForeign). */
const SET_ASIDE = /\.tenant-.+-[0-9]{13,}$/;

/** The tenant and the apps that could own a pet volume's id, or undefined when it is not a pet id. */
export function volumeOwners(id: string): { tenant: string; apps: string[] } | undefined {
  if (SET_ASIDE.test(id)) return undefined;
  const dot = id.indexOf(".");
  const tenant = dot === -1 ? "default" : id.slice(0, dot);
  const rest = dot === -1 ? id : id.slice(dot + 1);
  if (!TENANT.test(tenant) || !PET_REST.test(rest)) return undefined;
  // app-service-n: the app ends before a dash, and at least a service and an index follow it.
  const parts = rest.split("-");
  const apps: string[] = [];
  for (let k = 1; k <= parts.length - 2; k++) {
    const app = parts.slice(0, k).join("-");
    if (TENANT.test(app)) apps.push(app);
  }
  return apps.length > 0 ? { tenant, apps } : undefined;
}

/**
 * The volumes of `held` to discard: not an instance on this node, a pet id,
 * no app that could own it exists in its tenant, and one of those was destroyed.
 */
export function orphanVolumes(
  held: readonly string[],
  onNode: (id: string) => boolean,
  appExists: (tenant: string, app: string) => boolean,
  destroyed: (tenant: string, app: string) => boolean,
): string[] {
  return held.filter((id) => {
    if (onNode(id)) return false;
    const owners = volumeOwners(id);
    return (
      owners !== undefined &&
      !owners.apps.some((app) => appExists(owners.tenant, app)) &&
      owners.apps.some((app) => destroyed(owners.tenant, app))
    );
  });
}
