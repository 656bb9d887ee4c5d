/** The app a route names, or the 404 every app route answers when there is none. */

import { notFound } from "../../common/errors.ts";
import { type App, appKey } from "../../model/objects.ts";
import type { Store, StoredObject } from "../../store/store.ts";

/** The stored app `name` of `tenant`; a 404 when there is none (or, with `live`, when it is being destroyed). */
export async function existingApp(
  store: Store,
  tenant: string,
  name: string,
  options: { live?: boolean } = {},
): Promise<StoredObject<App>> {
  const o = await store.get<App>("app", appKey(tenant, name));
  if (!o || (options.live && o.value.destroying))
    throw notFound(`app ${name} does not exist (herd apps lists the apps)`);
  return o;
}
