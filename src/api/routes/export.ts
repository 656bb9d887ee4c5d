/**
 * `GET /apps/:app/export/kubernetes`: the app's current release as Kubernetes
 * objects (export/kubernetes.ts) with the warnings of what they leave out.
 * Secrets appear by name with placeholders, never with values. Permission `apps:read`.
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { conflict, notFound } from "../../common/errors.ts";
import { type Release, releaseKey, type Service } from "../../model/objects.ts";
import type { ApiDeps } from "../deps.ts";
import { AppParams, Name, tenantOf } from "../schemas.ts";
import { existingApp } from "./existing-app.ts";

/** An image reference: a lowercase repository path, then an optional tag and digest. */
const IMAGE_PATTERN = "^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$";

const ExportQuery = T.Object({
  tenant: T.Optional(Name),
  image: T.Optional(
    T.String({
      pattern: IMAGE_PATTERN,
      maxLength: 512,
      description:
        "the release's container image, e.g. registry.example.com/shop:v7 (default herd.local/<tenant>/<app>:v<release>)",
    }),
  ),
});

export function exportRoutes(api: FastifyInstance, deps: ApiDeps): void {
  api.get(
    "/apps/:app/export/kubernetes",
    {
      schema: {
        summary: "The app's current release as Kubernetes manifests",
        description:
          "Deployments (StatefulSets with a volume claim for pets), Services, an Ingress from the routes, " +
          "autoscaling/v2 HorizontalPodAutoscalers, and a Secret whose keys hold placeholders. " +
          "`warnings` lists what herd does that the objects do not say (docs/kubernetes.md).",
        tags: ["apps"],
        params: AppParams,
        querystring: ExportQuery,
      },
    },
    async (req) => {
      const tenant = tenantOf(req);
      const { app } = req.params as { app: string };
      const { image } = req.query as { image?: string };
      const o = await existingApp(deps.store, tenant, app);
      const version = o.value.release;
      if (version === null) throw conflict(`app ${app} has no release yet: herd deploy it first`);
      const release = await deps.store.get<Release>("release", releaseKey(tenant, app, version));
      if (!release) throw notFound(`release v${version} of app ${app} does not exist`);
      const counts = new Map(
        (await deps.store.list<Service>("service", { prefix: `${o.key}/` })).items.map((s) => [
          s.value.name,
          s.value.instances,
        ]),
      );
      const services = Object.fromEntries(
        Object.entries(release.value.services).map(([name, spec]) => [
          name,
          { spec, instances: counts.get(name) ?? spec.instances },
        ]),
      );
      const chosen = image ?? `herd.local/${tenant}/${app}:v${version}`;
      // Loaded at the first export: a control plane that never exports never holds the exporter (and its yaml).
      const { kubernetesManifests } = await import("../../export/kubernetes.ts");
      return {
        app,
        release: version,
        image: chosen,
        ...kubernetesManifests({ app, release: version, services, image: chosen }),
      };
    },
  );
}
