/**
 * Eviction under memory pressure, as the kubelet does it: when the node's
 * available memory falls below a threshold, the agent stops one instance
 * that uses more memory than it requested (a burstable one bursting):
 * burstable before guaranteed, then the lowest criticality, then the one
 * furthest over its request. A guaranteed instance is over its request only
 * where no cgroup holds it to its limit (a machine without cgroups), and
 * then goes after every burstable one. Instances within their request and
 * pets (their data lives on this node) are never picked: the scheduler never
 * overcommits requests, so only bursting can run the node short. The control plane replaces the evicted
 * instance as it replaces a crashed one (reason Evicted).
 */

import type { Resources } from "../model/objects.ts";
import { qosClass } from "../model/qos.ts";
import type { ServiceSpec } from "../model/service-spec.ts";

type Criticality = NonNullable<ServiceSpec["criticality"]>;

/** Available memory below which the agent evicts, by default (the kubelet's default too). */
export const DEFAULT_EVICTION_MEMORY = 100 * 1024 * 1024;

export interface EvictionCandidate {
  id: string;
  mode: "cattle" | "pet";
  criticality?: Criticality;
  resources: Resources;
  /** Bytes in use now (its cgroup's reading); unknown: not a candidate. */
  usedBytes?: number;
}

const ORDER: Record<Criticality, number> = { low: 0, normal: 1, critical: 2 };
const QOS_ORDER = { burstable: 0, guaranteed: 1 } as const;

/**
 * The instance to evict, and why, when `availableBytes` is below
 * `thresholdBytes`; undefined when the node has room or no instance is over
 * its request.
 */
export function pickEviction(
  availableBytes: number,
  thresholdBytes: number,
  candidates: readonly EvictionCandidate[],
): { id: string; why: string } | undefined {
  if (availableBytes >= thresholdBytes) return undefined;
  const over = candidates
    .filter((c) => c.mode === "cattle" && c.usedBytes !== undefined && c.usedBytes > c.resources.memory)
    .map((c) => ({ c, qos: qosClass(c.resources), excess: (c.usedBytes as number) - c.resources.memory }))
    .sort(
      (a, b) =>
        QOS_ORDER[a.qos] - QOS_ORDER[b.qos] ||
        ORDER[a.c.criticality ?? "normal"] - ORDER[b.c.criticality ?? "normal"] ||
        b.excess - a.excess,
    );
  const victim = over[0]?.c;
  if (!victim) return undefined;
  const mib = (n: number) => `${Math.round(n / 1024 / 1024)} MiB`;
  return {
    id: victim.id,
    why:
      `evicted for node memory pressure: ${mib(availableBytes)} available, below ${mib(thresholdBytes)}; ` +
      `it used ${mib(victim.usedBytes as number)} of a ${mib(victim.resources.memory)} request ` +
      `(${victim.criticality ?? "normal"}, ${over[0].qos})`,
  };
}

/**
 * The agent's eviction step: on each stats reading, picks at most one
 * instance (pickEviction) and has `evict` stop it; one eviction at a time,
 * and the next only on a fresh reading (the usage the last pick saw is gone).
 */
export class Evictor {
  readonly #thresholdBytes: number;
  readonly #evict: (id: string, why: string) => Promise<void>;
  #evicting = false;
  /** The reading the last eviction was chosen on. */
  #chosenOn: object | undefined;

  constructor(thresholdBytes: number, evict: (id: string, why: string) => Promise<void>) {
    this.#thresholdBytes = thresholdBytes;
    this.#evict = evict;
  }

  /** `reading` identifies the stats reading (the same object until the next one). */
  check(reading: object, availableBytes: number | undefined, candidates: readonly EvictionCandidate[]): void {
    if (availableBytes === undefined || this.#evicting || reading === this.#chosenOn) return;
    const pick = pickEviction(availableBytes, this.#thresholdBytes, candidates);
    if (!pick) return;
    this.#evicting = true;
    this.#chosenOn = reading;
    this.#evict(pick.id, pick.why).finally(() => {
      this.#evicting = false;
    });
  }
}
