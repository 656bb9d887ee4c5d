/**
 * Objects stored before the secret store kept secret values in plain text:
 * alert receivers' header values and consumers' HS256 secrets. At start the
 * server moves each into the secret store and rewrites the object with a
 * reference, so nothing else needs to know the old form.
 */

import type { Receiver } from "../model/alerts.ts";
import type { Consumer } from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import { sealReceiverHeaders } from "./receiver-headers.ts";
import { consumerScope, type SecretStore } from "./secret-store.ts";

const ACTOR = "herd (migration)";

/** Moves plain-text secrets into the store; returns how many objects were rewritten. */
export async function migratePlainSecrets(store: Store, secrets: SecretStore): Promise<number> {
  return (await migrateReceivers(store, secrets)) + (await migrateConsumers(store, secrets));
}

async function migrateReceivers(store: Store, secrets: SecretStore): Promise<number> {
  let moved = 0;
  for (const o of (await store.list<Receiver>("alert_receiver")).items) {
    const plain = Object.entries(o.value.headers ?? {}).flatMap(([header, v]) =>
      typeof v === "string" ? [[header, v] as [string, string]] : [],
    );
    if (plain.length === 0) continue;
    const { tenant, name } = o.value;
    const refs = await sealReceiverHeaders(secrets, tenant, name, Object.fromEntries(plain), ACTOR);
    const headers = { ...o.value.headers, ...refs };
    await store.put<Receiver>(
      "alert_receiver",
      o.key,
      { ...o.value, headers },
      { expectRevision: o.revision },
    );
    moved++;
  }
  return moved;
}

async function migrateConsumers(store: Store, secrets: SecretStore): Promise<number> {
  let moved = 0;
  for (const o of (await store.list<Consumer>("consumer")).items) {
    const c = o.value;
    if (!c.jwt.some((j) => j.secret !== undefined)) continue;
    const jwt = [];
    for (const { secret, ...j } of c.jwt) {
      if (secret === undefined) {
        jwt.push(j);
        continue;
      }
      const info = await secrets.set(c.tenant, consumerScope(c.name), j.id, secret, ACTOR);
      jwt.push({ ...j, secretRef: { secret: j.id, version: info.version } });
    }
    await store.put<Consumer>("consumer", o.key, { ...c, jwt }, { expectRevision: o.revision });
    moved++;
  }
  return moved;
}
