/**
 * Traffic across services and releases, built with the routing table:
 * a route's split over services (`Split`), its shadow copies (`Mirror`),
 * and the release split of a service during a canary or blue/green rollout
 * (two backends of one service, old and new release, by weight).
 */

import type { Route, StickySpec } from "../model/manifest.ts";
import { type Service, serviceKey } from "../model/objects.ts";
import { previewHost } from "../model/progressive.ts";
import { Backend, type Endpoint, fnv1a, type ServicePolicies } from "./backend.ts";
import { normalizePrefix } from "./route-match.ts";

/**
 * A traffic split: shares of a route's requests to other services. Without
 * stickiness the shares are exact (smooth weighted round robin); with it, a
 * client's key hashes to a fixed point in 0..100, so a client stays on one side
 * and raising a share moves only the clients in between.
 */
export class Split {
  readonly sticky: StickySpec | null;
  readonly #targets: { backend: Backend; weight: number; current: number }[];
  readonly #total: number;

  constructor(home: Backend, to: { backend: Backend; weight: number }[], sticky: StickySpec | null) {
    const rest = Math.max(0, 100 - to.reduce((sum, t) => sum + t.weight, 0));
    this.#targets = [...to, { backend: home, weight: rest }]
      .filter((t) => t.weight > 0)
      .map((t) => ({ ...t, current: 0 }));
    this.#total = this.#targets.reduce((sum, t) => sum + t.weight, 0);
    this.sticky = sticky;
  }

  /** The backend for a request; `key` is the client's sticky key when the split is sticky. */
  choose(key: string | undefined): Backend {
    const targets = this.#targets;
    if (this.sticky !== null && key !== undefined && key !== "") {
      let point = (fnv1a(key) % 10_000) / 100; // 0 ≤ point < 100
      for (const t of targets) {
        if (point < t.weight) return t.backend;
        point -= t.weight;
      }
      return targets[targets.length - 1].backend;
    }
    // Smooth weighted round robin (as nginx's): every target gains its weight, the leader pays the total.
    let best = targets[0];
    for (const t of targets) {
      t.current += t.weight;
      if (t.current > best.current) best = t;
    }
    best.current -= this.#total;
    return best.backend;
  }
}

/** Shadow traffic: `percent` of a route's bodiless requests, evenly spaced, are copied to `backend`. */
export class Mirror {
  readonly backend: Backend;
  readonly percent: number;
  #credit = 0;

  constructor(backend: Backend, percent: number) {
    this.backend = backend;
    this.percent = percent;
  }

  /** Whether this request is copied (an even spread: 25 % copies one request in four). */
  sample(): boolean {
    this.#credit += this.percent;
    if (this.#credit < 100) return false;
    this.#credit -= 100;
    return true;
  }
}

/** A route's `split`: its targets' backends by service name (a missing one is a problem and its share stays home). */
export function buildSplit(
  home: Backend,
  to: { service: string; weight: number }[],
  sticky: StickySpec | undefined,
  service: Service,
  backends: Map<string, Backend>,
  problems: string[],
): Split {
  const targets: { backend: Backend; weight: number }[] = [];
  for (const t of to) {
    const target = backends.get(serviceKey(service.tenant, service.app, t.service));
    if (target === undefined) {
      problems.push(
        `${service.app}/${service.name} splits ${t.weight}% to ${t.service}, which does not exist; that share stays`,
      );
      continue;
    }
    targets.push({ backend: target, weight: t.weight });
  }
  return new Split(home, targets, sticky ?? null);
}

/** A route's `mirror`, or null when it copies nothing or its service does not exist (a problem). */
export function buildMirror(
  spec: Route["mirror"],
  service: Service,
  backends: Map<string, Backend>,
  problems: string[],
): Mirror | null {
  if (!spec || spec.percent <= 0) return null;
  const target = backends.get(serviceKey(service.tenant, service.app, spec.service));
  if (target === undefined) {
    problems.push(`${service.app}/${service.name} mirrors to ${spec.service}, which does not exist`);
    return null;
  }
  return new Mirror(target, spec.percent);
}

/** Backend settings (backend.ts), as buildRouteTable makes them for a service. */
type BackendSettings = NonNullable<ConstructorParameters<typeof Backend>[4]>;

/**
 * A service during a canary or blue/green rollout (`service.progressive`):
 * `releases` splits its requests between the old release's backend and the
 * new one's (null while either has no endpoint), and `preview` is the new
 * release's own backend with the routes of its preview host (blue/green).
 * Both null when no rollout runs.
 */
export function buildReleases(
  key: string,
  name: string,
  service: Service,
  endpoints: readonly Endpoint[],
  policies: ServicePolicies,
  settings: BackendSettings,
): { releases: Split | null; preview: { routes: Route[]; backend: Backend } | null } {
  const progressive = service.progressive;
  let releases: Split | null = null;
  let preview: { routes: Route[]; backend: Backend } | null = null;
  if (progressive === undefined) return { releases, preview };
  // Two releases side by side: the new one gets `weight` percent of the requests (none while it has no endpoint).
  const fresh = endpoints.filter((e) => e.release === progressive.release);
  const old = endpoints.filter((e) => e.release !== progressive.release);
  const freshBackend = new Backend(key, name, fresh, policies, settings);
  if (fresh.length > 0 && old.length > 0) {
    releases = new Split(
      new Backend(key, name, old, policies, settings),
      [{ backend: freshBackend, weight: progressive.weight }],
      progressive.sticky ?? null,
    );
  }
  if (progressive.strategy === "bluegreen" && progressive.phase !== "aborted") {
    const host = previewHost(service.app, service.name, progressive.release);
    const paths = new Set((service.spec.routes ?? []).map((r) => normalizePrefix(r.path)));
    const routes = [...paths].map((path): Route => ({ host, path: path }));
    preview = { routes, backend: freshBackend };
  }
  return { releases, preview };
}
