/**
 * dependsOn in the control plane: a deploy that names an unknown service or
 * closes a cycle (within its app or across the tenant's apps) is refused, and
 * a service that rolls out waits until what it depends on runs.
 *
 *   deploy ─► checkDependencies(services of the release + every other app's) ─► 400 naming the cycle
 *   service controller: rolling out? ─► dependencyWait ─► "waiting for db" (no new instance yet)
 *                       replacing?   ─► dependenciesDown ─► "waiting for db" while none of db's instances runs
 */

import { HerdError } from "../common/errors.ts";
import { findCycle, formatCycle, qualify } from "../model/dependencies.ts";
import type { ServiceSpec } from "../model/manifest.ts";
import type { Instance, Service } from "../model/objects.ts";
import type { Store } from "../store/store.ts";

/**
 * Refuses (invalid, 400) a release whose dependsOn names another app's service
 * that does not exist, or that would close a dependency cycle with the
 * tenant's other apps as the store has them now.
 */
export async function checkDependencies(
  store: Store,
  tenant: string,
  app: string,
  services: Record<string, Pick<ServiceSpec, "dependsOn">>,
): Promise<void> {
  const all = (await store.list<Service>("service", { prefix: `${tenant}/` })).items.map((o) => o.value);
  const others = all.filter((s) => s.app !== app);
  const known = new Set([
    ...others.map((s) => `${s.app}/${s.name}`),
    ...Object.keys(services).map((n) => `${app}/${n}`),
  ]);
  for (const [name, spec] of Object.entries(services)) {
    qualify(app, spec.dependsOn).forEach((dep, n) => {
      if (known.has(dep)) return;
      const field = `services.${name}.dependsOn.${n}`;
      const [depApp] = dep.split("/");
      const why = others.some((s) => s.app === depApp)
        ? `app ${depApp} has no service ${dep.split("/")[1]}`
        : `there is no app ${depApp} in tenant ${tenant}`;
      throw new HerdError("invalid", `${field}: ${name} depends on ${dep}, but ${why}`, [
        { field, message: `unknown service ${dep}: ${why}` },
      ]);
    });
  }
  const graph = new Map<string, string[]>();
  for (const s of others) graph.set(`${s.app}/${s.name}`, qualify(s.app, s.spec.dependsOn));
  for (const [name, spec] of Object.entries(services))
    graph.set(`${app}/${name}`, qualify(app, spec.dependsOn));
  const cycle = findCycle(graph);
  // A cycle among other apps alone was there before this deploy; only refuse the one this app closes.
  const at = cycle?.findIndex((n) => n.startsWith(`${app}/`)) ?? -1;
  if (cycle && at >= 0) {
    // Told from this app's side: `a/web → b/api → a/web` for a deploy of a.
    const ring = cycle.slice(0, -1);
    const from = [...ring.slice(at), ...ring.slice(0, at)];
    const path = formatCycle([...from, from[0] as string]);
    const field = `services.${from[0]?.split("/")[1]}.dependsOn`;
    throw new HerdError("invalid", `${field}: dependency cycle: ${path}`, [
      { field, message: `dependency cycle: ${path}` },
    ]);
  }
}

/**
 * The app's service names, each after the services of the same app it
 * depends on (cycles were refused by checkDependencies). A deploy writes its
 * services in this order, so a dependent's controller always finds what it
 * waits for (dependencyWait does not wait for a service that does not exist).
 */
export function dependencyOrder(
  app: string,
  services: Record<string, Pick<ServiceSpec, "dependsOn">>,
): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name) || !(name in services)) return;
    seen.add(name);
    for (const dep of qualify(app, services[name]?.dependsOn))
      if (dep.startsWith(`${app}/`)) visit(dep.slice(app.length + 1));
    order.push(name);
  };
  for (const name of Object.keys(services)) visit(name);
  return order;
}

/**
 * Why a rolling-out service must wait before starting instances of its new
 * release: the services it depends on that do not run yet ("db, shop/api"),
 * or undefined when it may go. A dependency that failed does not hold it
 * back (its own deploy reverts it); one that does not exist is not waited for.
 */
export async function dependencyWait(store: Store, svc: Service): Promise<string[] | undefined> {
  const deps = qualify(svc.app, svc.spec.dependsOn);
  if (deps.length === 0) return undefined;
  const waiting: string[] = [];
  for (const dep of deps) {
    const o = await store.get<Service>("service", `${svc.tenant}/${dep}`);
    if (!o || o.value.state === "running" || o.value.state === "failed") continue;
    waiting.push(dep.startsWith(`${svc.app}/`) ? dep.slice(svc.app.length + 1) : dep);
  }
  return waiting.length > 0 ? waiting : undefined;
}

/**
 * Failover in dependency order: the services a service depends on that have
 * no running instance although they should (all lost with a node, say), or
 * undefined when none. Replacements of a dependent wait for them, so after a
 * node loss dependencies are placed and healthy before their dependents come
 * back. A dependency scaled to zero, failed or gone does not hold it back.
 */
export async function dependenciesDown(
  store: Store,
  svc: Service,
  instancesOf: (serviceKey: string) => readonly Instance[],
): Promise<string[] | undefined> {
  const deps = qualify(svc.app, svc.spec.dependsOn);
  if (deps.length === 0) return undefined;
  const down: string[] = [];
  for (const dep of deps) {
    const o = await store.get<Service>("service", `${svc.tenant}/${dep}`);
    if (!o || o.value.instances === 0 || o.value.state === "failed") continue;
    const runs = instancesOf(`${svc.tenant}/${dep}`).some(
      (i) => i.desired === "running" && i.state === "running",
    );
    if (!runs) down.push(dep.startsWith(`${svc.app}/`) ? dep.slice(svc.app.length + 1) : dep);
  }
  return down.length > 0 ? down : undefined;
}
