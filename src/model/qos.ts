/**
 * Quality-of-service classes, as Kubernetes names them. Memory is always
 * reserved and limited at its request, so the class depends on CPU: an
 * instance whose CPU ceiling equals its request is guaranteed (it gets its
 * request and never more); one without a ceiling, or with a higher one, is
 * burstable (it gets its request under contention and may use idle CPU).
 */

import type { Resources } from "./objects.ts";

export type QosClass = "guaranteed" | "burstable";

/** The QoS class of an instance with these resources. */
export function qosClass(r: Resources): QosClass {
  return r.cpuLimit !== undefined && r.cpuLimit <= r.cpu ? "guaranteed" : "burstable";
}
