/**
 * Reading and changing an app's remediation policy (the `remediation` object):
 * what the API's PUT, pause and resume do, and what the engine reads.
 */

import type { Clock } from "../../common/clock.ts";
import { HerdError } from "../../common/errors.ts";
import {
  defaultPolicy,
  type RemediationBody,
  type RemediationPolicy,
  remediationKey,
} from "../../model/remediation.ts";
import type { Store, StoredObject } from "../../store/store.ts";

/** The app's policy and the revision it was read at (0: none stored yet, the defaults). */
export async function readPolicy(
  store: Store,
  tenant: string,
  app: string,
  now: number,
): Promise<{ policy: RemediationPolicy; revision: number }> {
  const o: StoredObject<RemediationPolicy> | undefined = await store.get(
    "remediation",
    remediationKey(tenant, app),
  );
  if (o) return { policy: o.value, revision: o.revision };
  return { policy: defaultPolicy(tenant, app, new Date(now).toISOString()), revision: 0 };
}

/** Applies a body to the app's policy (retrying on a concurrent write); returns the policy stored. */
export async function updatePolicy(
  store: Store,
  clock: Clock,
  tenant: string,
  app: string,
  body: RemediationBody,
): Promise<RemediationPolicy> {
  if (body.builtIn && body.rules)
    throw new HerdError("invalid", "builtIn and rules together: choose one", [
      { field: "builtIn", message: "not with rules" },
    ]);
  const names = new Set<string>();
  body.rules?.forEach((r, i) => {
    if (names.has(r.name))
      throw new HerdError("invalid", `two rules named ${r.name}`, [
        { field: `rules.${i}.name`, message: "used twice" },
      ]);
    names.add(r.name);
    if (r.symptom === "alert" && !r.alert)
      throw new HerdError("invalid", `rule ${r.name}: symptom alert needs the alert rule's name`, [
        { field: `rules.${i}.alert`, message: "required for symptom alert" },
      ]);
    if (r.symptom !== "alert" && r.alert)
      throw new HerdError("invalid", `rule ${r.name}: alert is only for symptom alert`, [
        { field: `rules.${i}.alert`, message: "only for symptom alert" },
      ]);
  });
  for (;;) {
    const now = clock.now();
    const { policy, revision } = await readPolicy(store, tenant, app, now);
    const next: RemediationPolicy = { ...policy, updatedAt: new Date(now).toISOString() };
    if (body.builtIn) delete next.rules;
    else if (body.rules !== undefined) next.rules = body.rules;
    if (body.dryRun !== undefined) next.dryRun = body.dryRun;
    if (body.paused !== undefined) next.paused = body.paused;
    // Resumed: figures from the paused period are not acted on (the engine's windows start here).
    if (body.paused === false && policy.paused) next.resumedAt = next.updatedAt;
    if (body.budgetPerHour !== undefined) next.budgetPerHour = body.budgetPerHour;
    if (body.releaseWindowS !== undefined) next.releaseWindowS = body.releaseWindowS;
    if (body.outcomeAfterS !== undefined) next.outcomeAfterS = body.outcomeAfterS;
    try {
      await store.put("remediation", remediationKey(tenant, app), next, { expectRevision: revision });
      return next;
    } catch (err) {
      if ((err as { code?: string }).code !== "conflict") throw err;
    }
  }
}
