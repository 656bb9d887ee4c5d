// herd export kubernetes: every generated object is checked against the
// Kubernetes OpenAPI schema (the kubernetes-models package: validators
// generated from the Kubernetes API's OpenAPI document, required fields,
// types, enums and formats such as int32, int-or-string and quantity), and
// the manifests say what herd.yaml says.

import assert from "node:assert/strict";
import { test } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import { normalizeService, parseManifest } from "../model/manifest.ts";
import type { ServiceSpec } from "../model/service-spec.ts";
import { type KubernetesObject, kubernetesManifests, manifestFileName, toYaml } from "./kubernetes.ts";
import { fitLabel } from "./kubernetes-names.ts";
import { schemaError } from "./schema-testing.ts";

const MANIFEST = `app: shop
services:
  web:
    command: node server.js --port $PORT
    instances: 3
    resources: { cpu: 0.25, cpuLimit: 1, memory: 128Mi, memoryLimit: 256Mi }
    health: { path: /healthz, interval: 2, timeout: 1.5, failures: 4, startup: 60 }
    env:
      LOG_LEVEL: info
      PORT: "9999"
      DATABASE_URL: { secret: DATABASE_URL }
    routes:
      - host: shop.example.com
      - host: shop.example.com
        path: /api/v1/health
        match: exact
      - host: "*.shop.example.com"
        path: /admin
        methods: [GET]
        rewrite: /
    autoscale: { min: 2, max: 10, target: { cpu: 70% }, scaleDownDelay: 300 }
    minAvailable: 2
    placement:
      nodeSelector: { disk: ssd }
      replicas: apart
      spreadBy: topology.kubernetes.io/zone
      affinity: [{ service: db }]
      tolerations: [{ key: gpu }, { key: team, value: a }]
  api:
    command: node api.js
    routes:
      - host: api.example.com
        path: /v2
    autoscale: { min: 0, max: 5, target: { rps: 12.5 } }
    breaker: { failures: 5, open: 5 }
    criticality: critical
  worker:
    command: node worker.js
    resources: { memory: 64Mi }
    env:
      QUEUE_TOKEN: { secret: queue-token }
    jobs:
      cleanup: { schedule: "0 3 * * *", command: node cleanup.js, concurrency: forbid, timeout: 10m, history: 3 }
      tick: { schedule: "*/10 * * * * *", command: node tick.js }
  db:
    command: ./db --data $HERD_DATA_DIR
    mode: pet
    health: { tcp: true }
    resources: { memory: 1000000 }
`;

function specs(text = MANIFEST): Record<string, { spec: ServiceSpec; instances: number }> {
  const m = parseManifest(text);
  return Object.fromEntries(
    Object.entries(m.services).map(([name, s]) => {
      const spec = normalizeService(m.app ?? "shop", name, s, undefined);
      return [name, { spec, instances: spec.instances }];
    }),
  );
}

const exported = () =>
  kubernetesManifests({ app: "shop", release: 7, services: specs(), image: "registry.test/shop:v7" });
const find = (objects: KubernetesObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(o, `${kind} ${name} among ${objects.map((x) => `${x.kind}/${x.metadata?.name}`).join(" ")}`);
  // biome-ignore lint/suspicious/noExplicitAny: reading deep into a manifest in a test
  return o as any;
};

test("every exported object passes the Kubernetes OpenAPI schema, also after a YAML round trip", () => {
  const { objects } = exported();
  assert.deepEqual(
    objects.map((o) => `${o.kind}/${o.metadata?.name}`),
    [
      "Secret/shop-secrets",
      "Deployment/shop-api",
      "Service/shop-api",
      "HorizontalPodAutoscaler/shop-api",
      "StatefulSet/shop-db",
      "Service/shop-db",
      "Service/shop-db-pods",
      "Deployment/shop-web",
      "Service/shop-web",
      "PodDisruptionBudget/shop-web",
      "HorizontalPodAutoscaler/shop-web",
      "Deployment/shop-worker",
      "CronJob/shop-worker-cleanup",
      "Ingress/shop",
    ],
  );
  for (const o of objects) assert.equal(schemaError(o), undefined, `${o.kind} ${o.metadata?.name}`);
  const text = toYaml(objects);
  assert.doesNotMatch(text, /[&*]a\d+\b/, "no YAML anchors or aliases (the probes share one action)");
  const docs = parseAllDocuments(text).map((d) => d.toJS());
  assert.deepEqual(docs, JSON.parse(JSON.stringify(objects)));
  for (const o of docs) assert.equal(schemaError(o), undefined, `${o.kind} ${o.metadata?.name} from YAML`);
});

test("the schema check fails on broken objects (it is not a check that always passes)", () => {
  const { objects } = exported();
  const web = () => structuredClone(find(objects, "Deployment", "shop-web"));
  const broken: [string, unknown][] = [];
  const cron = structuredClone(find(objects, "CronJob", "shop-worker-cleanup"));
  delete cron.spec.schedule;
  broken.push(["a CronJob without its schedule", cron]);
  const pdb = structuredClone(find(objects, "PodDisruptionBudget", "shop-web"));
  pdb.spec.minAvailable = true;
  broken.push(["a PDB's minAvailable that is neither int nor string", pdb]);
  let d = web();
  delete d.spec.selector;
  broken.push(["a Deployment without its selector", d]);
  d = web();
  d.spec.replicas = "3";
  broken.push(["replicas as a string", d]);
  d = web();
  d.spec.template.spec.containers[0].ports[0].containerPort = 2 ** 31;
  broken.push(["a port past int32", d]);
  d = web();
  d.spec.template.spec.containers[0].resources.limits.memory = "256 MB";
  broken.push(["a memory limit that is no quantity", d]);
  d = web();
  delete d.spec.template.spec.containers[0].name;
  broken.push(["a container without a name", d]);
  const hpa = structuredClone(find(objects, "HorizontalPodAutoscaler", "shop-web"));
  delete hpa.spec.maxReplicas;
  broken.push(["an HPA without maxReplicas", hpa]);
  const ing = structuredClone(find(objects, "Ingress", "shop"));
  delete ing.spec.rules[0].http.paths[0].pathType;
  broken.push(["an Ingress path without pathType", ing]);
  broken.push(["an unknown kind", { apiVersion: "v1", kind: "Pod2", metadata: { name: "x" } }]);
  for (const [what, o] of broken) assert.ok(schemaError(o), `${what} must fail the schema`);
});

test("workloads: replicas, image and command, env without secret values, resources, probes", () => {
  const { objects } = exported();
  const web = find(objects, "Deployment", "shop-web");
  assert.equal(web.spec.replicas, 3);
  assert.deepEqual(web.spec.selector.matchLabels, {
    "app.kubernetes.io/name": "shop",
    "app.kubernetes.io/component": "web",
  });
  const [c] = web.spec.template.spec.containers;
  assert.equal(c.image, "registry.test/shop:v7");
  assert.deepEqual(c.command, ["/bin/sh", "-c", "node server.js --port $PORT"]);
  const env = Object.fromEntries(c.env.map((e: { name: string }) => [e.name, e]));
  assert.equal(env.LOG_LEVEL.value, "info");
  assert.equal(env.PORT.value, "8080", "herd's PORT wins over the service's, as on an agent");
  assert.equal(c.env.filter((e: { name: string }) => e.name === "PORT").length, 1);
  assert.deepEqual(env.DATABASE_URL.valueFrom, {
    secretKeyRef: { name: "shop-secrets", key: "DATABASE_URL" },
  });
  assert.equal(env.HERD_RELEASE.value, "7");
  assert.deepEqual(c.resources, {
    requests: { cpu: "250m", memory: "128Mi" },
    limits: { cpu: "1000m", memory: "256Mi" },
  });
  assert.deepEqual(c.ports, [{ name: "http", containerPort: 8080, protocol: "TCP" }]);
  assert.deepEqual(c.livenessProbe, {
    httpGet: { path: "/healthz", port: "http" },
    periodSeconds: 2,
    timeoutSeconds: 2,
    failureThreshold: 4,
  });
  assert.equal(c.readinessProbe.failureThreshold, 1);
  assert.equal(c.startupProbe.failureThreshold, 30, "60 s of startup at one probe every 2 s");

  const worker = find(objects, "Deployment", "shop-worker").spec.template.spec.containers[0];
  assert.equal(worker.ports, undefined, "a worker without routes does not listen");
  assert.equal(worker.livenessProbe, undefined, "its check is the process staying up: kubelet restarts it");
  assert.deepEqual(
    worker.resources,
    { requests: { cpu: "100m", memory: "64Mi" }, limits: { memory: "64Mi" } },
    "no memoryLimit: the request",
  );
  assert.equal(
    objects.filter((o) => o.metadata?.name === "shop-worker").length,
    1,
    "no Service for a worker",
  );

  const secret = find(objects, "Secret", "shop-secrets");
  assert.deepEqual(secret.stringData, { DATABASE_URL: "REPLACE_ME", "queue-token": "REPLACE_ME" });
  assert.ok(!JSON.stringify(objects).includes("s3cr3t"));
});

test("a pet is a StatefulSet with a volume claim, governed by a headless Service", () => {
  const { objects } = exported();
  const db = find(objects, "StatefulSet", "shop-db");
  assert.equal(db.spec.serviceName, "shop-db-pods");
  assert.deepEqual(db.spec.volumeClaimTemplates[0].spec, {
    accessModes: ["ReadWriteOnce"],
    resources: { requests: { storage: "1Gi" } },
  });
  const pod = db.spec.template.spec;
  assert.equal(pod.volumes, undefined, "the claim provides the data volume");
  assert.deepEqual(pod.containers[0].volumeMounts, [{ name: "data", mountPath: "/data" }]);
  assert.deepEqual(pod.containers[0].livenessProbe.tcpSocket, { port: "http" });
  assert.equal(pod.containers[0].resources.requests.memory, "1000000");
  assert.equal(find(objects, "Service", "shop-db-pods").spec.clusterIP, "None");
});

test("routes become Ingress rules with path and match; gateway policies are warnings", () => {
  const { objects, warnings } = exported();
  const ing = find(objects, "Ingress", "shop");
  assert.deepEqual(ing.spec.rules, [
    {
      host: "api.example.com",
      http: {
        paths: [
          {
            path: "/v2",
            pathType: "Prefix",
            backend: { service: { name: "shop-api", port: { name: "http" } } },
          },
        ],
      },
    },
    {
      host: "shop.example.com",
      http: {
        paths: [
          {
            path: "/",
            pathType: "Prefix",
            backend: { service: { name: "shop-web", port: { name: "http" } } },
          },
          {
            path: "/api/v1/health",
            pathType: "Exact",
            backend: { service: { name: "shop-web", port: { name: "http" } } },
          },
        ],
      },
    },
    {
      host: "*.shop.example.com",
      http: {
        paths: [
          {
            path: "/admin",
            pathType: "Prefix",
            backend: { service: { name: "shop-web", port: { name: "http" } } },
          },
        ],
      },
    },
  ]);
  assert.ok(
    warnings.some((w) => w.includes("*.shop.example.com/admin") && w.includes("methods, rewrite")),
    warnings.join("\n"),
  );
  assert.ok(
    warnings.includes("service api: breaker, criticality not expressed (herd's gateway policies)"),
    warnings.join("\n"),
  );
  assert.ok(!warnings.some((w) => w.startsWith("service web:")), warnings.join("\n"));
});

test("autoscale becomes an autoscaling/v2 HPA: CPU utilization, custom metrics, min 0 as 1", () => {
  const { objects, warnings } = exported();
  const web = find(objects, "HorizontalPodAutoscaler", "shop-web");
  assert.deepEqual(web.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: "shop-web" });
  assert.deepEqual([web.spec.minReplicas, web.spec.maxReplicas], [2, 10]);
  assert.deepEqual(web.spec.metrics, [
    { type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } } },
  ]);
  assert.equal(web.spec.behavior.scaleDown.stabilizationWindowSeconds, 300);
  const api = find(objects, "HorizontalPodAutoscaler", "shop-api");
  assert.equal(api.spec.minReplicas, 1);
  assert.deepEqual(api.spec.metrics[0].pods.target, { type: "AverageValue", averageValue: "12500m" });
  assert.ok(warnings.some((w) => w.startsWith("api: autoscale min 0")));
  assert.ok(warnings.some((w) => w.includes("herd_http_requests_per_second")));
});

test("long names are cut to 63 characters with a hash; one file per object", () => {
  const long = `${"a".repeat(40)}-${"b".repeat(40)}`;
  const cut = fitLabel(long);
  assert.equal(cut.length, 63);
  assert.match(cut, /^a{40}-b{13}-[0-9a-f]{8}$/);
  assert.notEqual(fitLabel(`${long}x`), cut);
  const app = "a".repeat(40);
  const { objects } = kubernetesManifests({
    app,
    release: 1,
    services: specs(
      `app: ${app}\nservices:\n  ${"b".repeat(40)}:\n    command: x\n    routes: [{ host: a.test }]\n`,
    ),
    image: "x:1",
  });
  for (const o of objects) assert.equal(schemaError(o), undefined);
  assert.ok(objects.every((o) => (o.metadata?.name ?? "").length <= 63));
  assert.equal(manifestFileName(objects[0]), `deployment-${cut}.yaml`);
  assert.deepEqual(parse(toYaml([objects[0]])), objects[0]);
});

test("placement: node selector, (anti-)affinity by the services' labels, spread, tolerations; minAvailable as a PDB", () => {
  const { objects } = exported();
  const pod = find(objects, "Deployment", "shop-web").spec.template.spec;
  assert.deepEqual(pod.nodeSelector, { disk: "ssd" });
  const term = (component: string) => ({
    labelSelector: {
      matchLabels: { "app.kubernetes.io/name": "shop", "app.kubernetes.io/component": component },
    },
    topologyKey: "kubernetes.io/hostname",
  });
  assert.deepEqual(pod.affinity, {
    podAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: term("db") }],
    },
    podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term("web")] },
  });
  assert.equal(pod.topologySpreadConstraints[0].topologyKey, "topology.kubernetes.io/zone");
  assert.deepEqual(pod.tolerations, [
    { key: "gpu", operator: "Exists" },
    { key: "team", operator: "Equal", value: "a" },
  ]);
  const pdb = find(objects, "PodDisruptionBudget", "shop-web");
  assert.deepEqual(pdb.spec, {
    minAvailable: 2,
    selector: { matchLabels: term("web").labelSelector.matchLabels },
  });
  assert.equal(find(objects, "Deployment", "shop-worker").spec.template.spec.affinity, undefined);
});

test("a service's jobs become CronJobs with its image, env and resources; 6-field schedules are warnings", () => {
  const { objects, warnings } = exported();
  const cron = find(objects, "CronJob", "shop-worker-cleanup");
  assert.equal(cron.spec.schedule, "0 3 * * *");
  assert.equal(cron.spec.concurrencyPolicy, "Forbid");
  assert.deepEqual([cron.spec.successfulJobsHistoryLimit, cron.spec.failedJobsHistoryLimit], [3, 3]);
  const job = cron.spec.jobTemplate.spec;
  assert.equal(job.activeDeadlineSeconds, 600);
  const pod = job.template.spec;
  assert.equal(pod.restartPolicy, "Never");
  assert.deepEqual(pod.containers[0].command, ["/bin/sh", "-c", "node cleanup.js"]);
  assert.equal(pod.containers[0].image, "registry.test/shop:v7");
  assert.deepEqual(pod.containers[0].resources.requests, { cpu: "100m", memory: "64Mi" });
  const token = pod.containers[0].env.find((e: { name: string }) => e.name === "QUEUE_TOKEN");
  assert.deepEqual(token.valueFrom.secretKeyRef, { name: "shop-secrets", key: "queue-token" });
  assert.notEqual(
    job.template.metadata.labels["app.kubernetes.io/component"],
    "worker",
    "a job's pods are not the service's: its Service never routes to them",
  );
  assert.ok(
    warnings.some((w) => w.includes("job tick") && w.includes("5 fields")),
    warnings.join("\n"),
  );
});

test("a service that runs an image keeps it, and the image's own command unless herd.yaml gives one", () => {
  const services = specs(`app: shop
services:
  cache:
    image: registry.test/redis:7
    routes: [{ host: cache.example.com }]
  tool:
    image: registry.test/tool:1
    command: tool serve
    routes: [{ host: tool.example.com }]
`);
  const { objects } = kubernetesManifests({
    app: "shop",
    release: 3,
    services,
    image: "registry.test/shop:v3",
  });
  for (const o of objects) assert.equal(schemaError(o), undefined, `${o.kind} ${o.metadata?.name}`);
  const [cache] = find(objects, "Deployment", "shop-cache").spec.template.spec.containers;
  assert.equal(cache.image, "registry.test/redis:7");
  assert.equal(cache.command, undefined);
  const [tool] = find(objects, "Deployment", "shop-tool").spec.template.spec.containers;
  assert.equal(tool.image, "registry.test/tool:1");
  assert.deepEqual(tool.command, ["/bin/sh", "-c", "tool serve"]);
});

test("pods run as an unprivileged uid, as herd runs containers (restricted); user: image keeps the image's user", () => {
  const services = specs(`app: shop
services:
  web:
    command: node server.js
    jobs:
      nightly: { schedule: "0 1 * * *", command: node nightly.js }
  proxy:
    image: registry.test/nginx:1
    user: image
    routes: [{ host: proxy.example.com }]
`);
  const { objects } = kubernetesManifests({
    app: "shop",
    release: 2,
    services,
    image: "registry.test/shop:v2",
  });
  for (const o of objects) assert.equal(schemaError(o), undefined, `${o.kind} ${o.metadata?.name}`);
  const restricted = (pod: {
    securityContext?: Record<string, unknown>;
    containers: { securityContext?: unknown }[];
  }) => {
    assert.deepEqual(pod.securityContext, {
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      supplementalGroups: [0],
      fsGroup: 10001,
      seccompProfile: { type: "RuntimeDefault" },
    });
    assert.deepEqual(pod.containers[0].securityContext, {
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
  };
  restricted(find(objects, "Deployment", "shop-web").spec.template.spec);
  restricted(find(objects, "CronJob", "shop-web-nightly").spec.jobTemplate.spec.template.spec);
  const proxy = find(objects, "Deployment", "shop-proxy").spec.template.spec;
  assert.equal(proxy.securityContext, undefined);
  assert.equal(proxy.containers[0].securityContext, undefined);
});
