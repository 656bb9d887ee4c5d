/**
 * One herd service as a Kubernetes workload: a Deployment (cattle) or a
 * StatefulSet with a volume claim (pets), whose pod runs the release's image
 * with the service's command, env, secrets, resources and health probes.
 */

import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IStatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import type { IContainer } from "kubernetes-models/v1/Container";
import type { IEnvVar } from "kubernetes-models/v1/EnvVar";
import type { IPodSecurityContext } from "kubernetes-models/v1/PodSecurityContext";
import type { IPodTemplateSpec } from "kubernetes-models/v1/PodTemplateSpec";
import type { IProbe } from "kubernetes-models/v1/Probe";
import type { IResourceRequirements } from "kubernetes-models/v1/ResourceRequirements";
import type { ISecurityContext } from "kubernetes-models/v1/SecurityContext";
import type { HealthCheck, Resources } from "../model/objects.ts";
import type { ServiceSpec } from "../model/service-spec.ts";
import { type ExportNames, labelsOf, selectorOf } from "./kubernetes-names.ts";
import type { Scheduling } from "./kubernetes-placement.ts";

/** The port every exported container listens on (herd hands it over as PORT, as its agents do). */
export const CONTAINER_PORT = 8080;
/** Where HERD_DATA_DIR points in the pod: an emptyDir for cattle, the claim for pets. */
export const DATA_DIR = "/data";
/** The size each pet's volume claim asks for: herd.yaml has no size for a pet's data. */
export const PET_VOLUME_SIZE = "1Gi";
/** The unprivileged uid (and gid) pods run as, as herd runs every container as its tenant's uid. */
export const RUN_AS_UID = 10001;

/**
 * Who a service's pods run as. As on herd (docs/containers.md): an
 * unprivileged uid whatever the image names, the root group besides its own
 * (an image made for any uid writes where group 0 may), no privilege gained,
 * no capabilities; the data volume is the pod's group's. That is the
 * Pod Security Standard "restricted". `user: image` keeps the image's user.
 */
export function securityOf(spec: ServiceSpec): { pod?: IPodSecurityContext; container?: ISecurityContext } {
  if (spec.user === "image") return {};
  return {
    pod: {
      runAsNonRoot: true,
      runAsUser: RUN_AS_UID,
      runAsGroup: RUN_AS_UID,
      supplementalGroups: [0],
      fsGroup: RUN_AS_UID,
      seccompProfile: { type: "RuntimeDefault" },
    },
    container: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
  };
}

/** What the workload of one service is built from. */
export interface WorkloadInput {
  names: ExportNames;
  service: string;
  spec: ServiceSpec;
  /** Desired instances now (herd scale's count, else the spec's). */
  replicas: number;
  release: number;
  image: string;
  /** The Secret holding the app's secrets, when any service refers to one. */
  secretName?: string;
  /** Node selector, affinities, spread and tolerations from the service's placement. */
  scheduling?: Scheduling;
}

/** Whether the service listens on its port: it has routes, or its health check needs the port. */
export function listens(spec: ServiceSpec): boolean {
  return spec.routes.length > 0 || spec.health.kind !== "process";
}

/** A Deployment for cattle, a StatefulSet (governed by `names.headless(service)`) for pets. */
export function workloadOf(input: WorkloadInput): IDeployment | IStatefulSet {
  const { names, service, spec } = input;
  const metadata = { name: names.workload(service), labels: labelsOf(names, service, input.release) };
  const selector = { matchLabels: selectorOf(names, service) };
  const template = podTemplate(input);
  if (spec.mode === "pet") {
    return {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata,
      spec: {
        serviceName: names.headless(service),
        replicas: input.replicas,
        selector,
        template,
        volumeClaimTemplates: [
          {
            metadata: { name: "data" },
            spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: PET_VOLUME_SIZE } } },
          },
        ],
      },
    };
  }
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata,
    spec: {
      replicas: input.replicas,
      selector,
      template,
      strategy: { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
    },
  };
}

function podTemplate(input: WorkloadInput): IPodTemplateSpec {
  const { names, service, spec } = input;
  const security = securityOf(spec);
  const container: IContainer = {
    name: service,
    // A service that runs an image (herd.yaml `image:`) keeps it, and its own command only when it gives one.
    image: spec.image ?? input.image,
    ...(spec.image && !spec.command ? {} : { command: ["/bin/sh", "-c", spec.command] }),
    env: envOf(input),
    resources: resourcesOf(spec.resources),
    volumeMounts: [{ name: "data", mountPath: DATA_DIR }],
    ...(security.container ? { securityContext: security.container } : {}),
  };
  if (listens(spec)) container.ports = [{ name: "http", containerPort: CONTAINER_PORT, protocol: "TCP" }];
  const probes = probesOf(spec.health);
  Object.assign(container, probes);
  return {
    metadata: { labels: labelsOf(names, service, input.release) },
    spec: {
      containers: [container],
      ...(security.pod ? { securityContext: security.pod } : {}),
      ...input.scheduling,
      // Pets get their `data` volume from the StatefulSet's claim; cattle's data goes with the pod, as on herd.
      ...(spec.mode === "pet" ? {} : { volumes: [{ name: "data", emptyDir: {} }] }),
    },
  };
}

/** herd's variables for an instance, then the service's env; secrets by reference, never by value. */
export function envOf(input: WorkloadInput): IEnvVar[] {
  const herd: Record<string, string> = {
    PORT: String(CONTAINER_PORT),
    HERD_APP: input.names.app,
    HERD_SERVICE: input.service,
    HERD_RELEASE: String(input.release),
    HERD_DATA_DIR: DATA_DIR,
  };
  const env: IEnvVar[] = [];
  // herd's own variables win over the service's, as on an agent; a name appears once.
  for (const [name, value] of Object.entries(input.spec.env))
    if (!Object.hasOwn(herd, name)) env.push({ name, value });
  for (const [name, secret] of Object.entries(input.spec.secrets ?? {})) {
    if (Object.hasOwn(herd, name) || !input.secretName) continue;
    env.push({ name, valueFrom: { secretKeyRef: { name: input.secretName, key: secret } } });
  }
  env.push({ name: "HERD_INSTANCE", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } });
  for (const [name, value] of Object.entries(herd)) env.push({ name, value });
  return env;
}

/** Requests are what placement counts; limits: the memory limit (else the request, as on herd) and the CPU ceiling when set. */
export function resourcesOf(r: Resources): IResourceRequirements {
  return {
    requests: { cpu: cpuQuantity(r.cpu), memory: bytesQuantity(r.memory) },
    limits: {
      memory: bytesQuantity(r.memoryLimit ?? r.memory),
      ...(r.cpuLimit !== undefined ? { cpu: cpuQuantity(r.cpuLimit) } : {}),
    },
  };
}

/** Cores as millicores, at least 1m. */
export function cpuQuantity(cores: number): string {
  return `${Math.max(1, Math.round(cores * 1000))}m`;
}

/** Bytes in the largest binary unit that divides them (Gi, Mi, Ki), else plain bytes. */
export function bytesQuantity(bytes: number): string {
  const n = Math.round(bytes);
  for (const [unit, size] of [
    ["Gi", 1024 ** 3],
    ["Mi", 1024 ** 2],
    ["Ki", 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return String(n);
}

/**
 * herd's health check as kubelet probes: liveness after `failures` misses,
 * readiness (in the Service's endpoints only once passing, like herd's
 * `running`), and a startup probe that allows `startupMs`. A `process` check
 * (the process staying up) needs no probe: kubelet restarts a container that exits.
 */
export function probesOf(
  h: HealthCheck,
): Pick<IContainer, "livenessProbe" | "readinessProbe" | "startupProbe"> {
  if (h.kind === "process") return {};
  const action: IProbe =
    h.kind === "http" ? { httpGet: { path: h.path ?? "/", port: "http" } } : { tcpSocket: { port: "http" } };
  const periodSeconds = Math.max(1, Math.ceil(h.intervalMs / 1000));
  const timeoutSeconds = Math.max(1, Math.ceil(h.timeoutMs / 1000));
  return {
    livenessProbe: { ...action, periodSeconds, timeoutSeconds, failureThreshold: Math.max(1, h.failures) },
    readinessProbe: { ...action, periodSeconds, timeoutSeconds, failureThreshold: 1 },
    startupProbe: {
      ...action,
      periodSeconds,
      timeoutSeconds,
      failureThreshold: Math.max(1, Math.ceil(h.startupMs / (periodSeconds * 1000))),
    },
  };
}
