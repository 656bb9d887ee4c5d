/**
 * The server of herd's own add-on deployed (on create, and again on a plan
 * change), and plan changes of herd's own add-ons (a broker's: broker-addons.ts).
 *
 *   change ─► plan, planChange {from, since} stored ─► deployServer (pet: updated in place, data kept)
 *          ─► planChange.deploy = its id
 *   follow (every sync) ─► no deploy yet and a minute old (a crash): deployed now
 *          ─► deploy succeeded: planChange cleared · failed: the old plan back (its release still runs)
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packAll } from "../builder/pack.ts";
import { conflict, invalid } from "../common/errors.ts";
import { deployKey } from "../controllers/deploy-controller.ts";
import { ADDON_PLANS, type Addon, type AddonKind } from "../model/addon.ts";
import type { Deploy } from "../model/objects.ts";
import type { AddonDeps } from "./addons.ts";
import { driverOf } from "./kinds.ts";

/** A plan change with no deploy recorded this long after it was stored lost its server (a crash). */
const REDEPLOY_AFTER_MS = 60_000;

type ServerDeps = Pick<AddonDeps, "deploys" | "artifacts" | "build">;
type Deps = ServerDeps &
  Pick<AddonDeps, "store" | "events"> & {
    get(tenant: string, name: string): Promise<Addon>;
    update(tenant: string, name: string, f: (a: Addon) => Addon): Promise<void>;
  };

/** Packs the add-on server's source for `plan` (start script, herd.yaml) and deploys it; returns the deploy. */
export async function deployServer(
  d: ServerDeps,
  tenant: string,
  name: string,
  kind: AddonKind,
  plan: string,
): Promise<Deploy> {
  const p = ADDON_PLANS[plan];
  const dir = await mkdtemp(join(tmpdir(), "herd-addon-"));
  let digest: string;
  try {
    await driverOf({ kind }).source(dir, { name, units: p.units, maxConnections: p.maxConnections });
    const packed = await packAll(dir);
    try {
      digest = (await d.artifacts.putFile(packed.file)).digest;
    } finally {
      await rm(packed.file, { force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return d.deploys.startDeploy(tenant, name, async (log) => {
    const built = await d.build({ source: digest, tenant, app: name, log });
    return { ...built, source: digest, description: `${kind} add-on (plan ${plan})` };
  });
}

export class PlanChange {
  readonly #d: Deps;

  constructor(deps: Deps) {
    this.#d = deps;
  }

  /** Moves herd's own add-on `a` to another plan: its server deployed again with the plan's units and connections. */
  async change(
    a: Addon,
    o: { plan?: string; parameters?: Record<string, unknown> },
    actor: string,
  ): Promise<{ addon: Addon; deploy: string }> {
    const { tenant, name } = a;
    if (o.parameters !== undefined)
      throw invalid(`${a.kind} add-ons take no parameters`, [
        { field: "parameters", message: "only a broker's service takes parameters" },
      ]);
    if (!o.plan || !ADDON_PLANS[o.plan])
      throw invalid(`unknown plan ${o.plan ?? "(none)"}`, [
        { field: "plan", message: `must be one of ${Object.keys(ADDON_PLANS).join(", ")}` },
      ]);
    if (o.plan === a.plan)
      throw invalid(`${name} is on plan ${a.plan} already`, [
        { field: "plan", message: `another plan than ${a.plan}` },
      ]);
    if (a.planChange)
      throw conflict(
        `${name}'s move to plan ${a.plan} is still rolling out; change it again once it has finished`,
      );
    const from = a.plan;
    const plan = o.plan;
    // Kept before the deploy: a crash after it is finished (or undone) by the add-on timer.
    let claimed = false;
    await this.#d.update(tenant, name, (x) => {
      claimed = !x.planChange && x.plan === from;
      return claimed ? { ...x, plan, planChange: { from, since: new Date().toISOString() } } : x;
    });
    if (!claimed) throw conflict(`add-on ${name} changed meanwhile; try again`);
    const deploy = await this.#deploy(a, plan);
    await this.#d.events.record({
      tenant,
      app: name,
      reason: "AddonPlanChanging",
      message: `${name}: plan ${from} → ${plan} by ${actor}; deploy ${deploy} restarts its server in place`,
    });
    return { addon: await this.#d.get(tenant, name), deploy };
  }

  /** The add-on timer's part: starts a deploy a crash lost, ends the change once its deploy has finished. */
  async follow(a: Addon): Promise<void> {
    const c = a.planChange;
    if (!c || a.broker) return;
    if (!c.deploy) {
      if (Date.now() - Date.parse(c.since) > REDEPLOY_AFTER_MS) await this.#deploy(a, a.plan);
      return;
    }
    const d = await this.#d.store.get<Deploy>(
      "deploy",
      deployKey({ tenant: a.tenant, app: a.name, id: c.deploy }),
    );
    const state = d?.value.state;
    if (state === "building" || state === "rolling_out") return;
    const ok = state === "succeeded";
    let ended = false;
    await this.#d.update(a.tenant, a.name, (x) => {
      ended = x.planChange?.deploy === c.deploy;
      if (!ended) return x;
      const { planChange: _, ...rest } = x;
      return ok ? rest : { ...rest, plan: c.from };
    });
    if (ended)
      await this.#d.events.record({
        tenant: a.tenant,
        app: a.name,
        reason: ok ? "AddonPlanChanged" : "AddonPlanFailed",
        message: ok
          ? `${a.name} runs on plan ${a.plan}`
          : `deploy ${c.deploy} of ${a.name} on plan ${a.plan} ${state ?? "is gone"}${d?.value.message ? `: ${d.value.message}` : ""}; it stays on plan ${c.from}`,
      });
  }

  /** Deploys the server with `plan` and records the deploy on the plan change. */
  async #deploy(a: Addon, plan: string): Promise<string> {
    const deploy = await deployServer(this.#d, a.tenant, a.name, a.kind as AddonKind, plan);
    await this.#d.update(a.tenant, a.name, (x) =>
      x.planChange && x.plan === plan ? { ...x, planChange: { ...x.planChange, deploy: deploy.id } } : x,
    );
    return deploy.id;
  }
}
