/**
 * Who a container runs as. By default every container runs as its tenant's
 * unprivileged uid (agent/sandbox.ts), an image's too; `user: image` in
 * herd.yaml runs it as the image's own user (root when the image names none),
 * which only a tenant a platform admin allowed may ask for
 * (`herd tenants image-user NAME allow`). A deploy asking for it elsewhere is
 * refused, and an instance or run is given it only while the tenant still
 * allows it: after a denial, every instance made or updated (a deploy, a
 * restart, a replacement) runs as the tenant's uid.
 */

import { HerdError } from "../common/errors.ts";
import type { Tenant } from "../model/objects.ts";
import type { ServiceSpec } from "../model/service-spec.ts";
import type { Store } from "../store/store.ts";

async function allowed(store: Store, tenant: string): Promise<boolean> {
  return (await store.get<Tenant>("tenant", tenant))?.value.allowImageUser === true;
}

/** Throws `forbidden`, naming each `services.NAME.user`, when a service asks for its image's user and the tenant may not. */
export async function checkImageUser(
  store: Store,
  tenant: string,
  services: Readonly<Record<string, ServiceSpec>>,
): Promise<void> {
  const asking = Object.entries(services).filter(([, s]) => s.user === "image");
  if (asking.length === 0 || (await allowed(store, tenant))) return;
  const message = `tenant ${tenant} may not run containers as their image's user (root when the image names none); leave user out to run as the tenant's uid, or ask a platform admin: herd tenants image-user ${tenant} allow`;
  throw new HerdError(
    "forbidden",
    `${asking.map(([name]) => `services.${name}.user`).join(", ")}: ${message}`,
    asking.map(([name]) => ({ field: `services.${name}.user`, message })),
  );
}

/** `{imageUser: true}` for an instance or run of `spec` when it asks for its image's user and the tenant allows it now. */
export async function imageUserOf(
  store: Store,
  tenant: string,
  spec: Pick<ServiceSpec, "user">,
): Promise<{ imageUser?: true }> {
  return spec.user === "image" && (await allowed(store, tenant)) ? { imageUser: true } : {};
}
