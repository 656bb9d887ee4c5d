/**
 * Alert receivers' webhook headers (often `Authorization`) are secrets: the
 * receiver object keeps `{secret, version}` per header; the values live in
 * the secret store under the scope `_receiver.<name>`, one secret per header
 * (its lowercase name), and only the notifier gets them, per delivery.
 */

import type { Receiver } from "../model/alerts.ts";
import type { SecretPin } from "../model/objects.ts";
import type { Store } from "../store/store.ts";
import { receiverScope, type SecretStore } from "./secret-store.ts";

/** Stores each header's value as a secret of the receiver; returns the references the receiver keeps. */
export async function sealReceiverHeaders(
  secrets: SecretStore,
  tenant: string,
  receiver: string,
  headers: Record<string, string>,
  actor: string,
): Promise<Record<string, SecretPin>> {
  const refs: Record<string, SecretPin> = {};
  for (const [header, value] of Object.entries(headers)) {
    const secret = header.toLowerCase();
    const info = await secrets.set(tenant, receiverScope(receiver), secret, value, actor);
    refs[header] = { secret, version: info.version };
  }
  return refs;
}

/** Unsets the header secrets a receiver no longer has (`kept`: the headers it keeps). */
export async function dropReceiverHeaders(
  secrets: SecretStore,
  tenant: string,
  receiver: string,
  before: Record<string, SecretPin> | undefined,
  kept: Record<string, SecretPin> | undefined,
  actor: string,
): Promise<void> {
  const still = new Set(Object.values(kept ?? {}).map((r) => r.secret));
  for (const ref of Object.values(before ?? {})) {
    if (!still.has(ref.secret)) await secrets.unset(tenant, receiverScope(receiver), ref.secret, actor);
  }
}

/** The headers of receiver `<tenant>/<name>` with their values, for one delivery (none when it is gone). */
export async function receiverHeaderValues(
  store: Store,
  secrets: SecretStore,
  key: string,
): Promise<Record<string, string>> {
  const o = await store.get<Receiver>("alert_receiver", key);
  if (!o) return {};
  const out: Record<string, string> = {};
  for (const [header, ref] of Object.entries(o.value.headers ?? {})) {
    out[header] = await secrets.value(o.value.tenant, receiverScope(o.value.name), ref.secret, ref.version);
  }
  return out;
}
