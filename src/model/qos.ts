/**
 * Quality-of-service classes, as Kubernetes names them. An instance whose
 * limits equal its requests (a CPU ceiling at its request, and no memory
 * limit above its memory request) is guaranteed: it gets its request and
 * never more. Any other is burstable: it gets its requests under contention,
 * may use idle CPU and memory up to its limits, and is the first evicted when
 * its node runs short of memory (agent/eviction.ts).
 */

import type { Resources } from "./objects.ts";

export type QosClass = "guaranteed" | "burstable";

/** The QoS class of an instance with these resources. */
export function qosClass(r: Resources): QosClass {
  const cpuCapped = r.cpuLimit !== undefined && r.cpuLimit <= r.cpu;
  const memoryCapped = r.memoryLimit === undefined || r.memoryLimit <= r.memory;
  return cpuCapped && memoryCapped ? "guaranteed" : "burstable";
}
