/**
 * The local OCI registry's side of the control plane (agents only, `node:agent`;
 * docs/containers.md):
 *
 *   POST /registry/images   {tenant, app, release, service, image}   an agent ran this image (by digest) for that release
 *   GET  /registry/kept     {digests, images}                          what the registry's collection must keep
 *   POST /registry/credentials {serve?: HOST:PORT}                     the registries' user, password and CA;
 *                                                                        with serve: a certificate for HOST
 *
 * A release keeps the images its instances ran for as long as herd keeps the
 * release (a rollback target runs the same bytes again); the serving agent's
 * collection deletes every other build (agent/registry.ts collectUnused).
 */

import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { notFound } from "../../common/errors.ts";
import { type Release, releaseKey } from "../../model/objects.ts";
import { updateObject } from "../../store/store.ts";
import type { ApiDeps } from "../deps.ts";
import { Name } from "../schemas.ts";

/** `name@sha256:<64 hex>`: an image by digest. */
const BY_DIGEST = /^[^\s@]{1,400}@(sha256:[0-9a-f]{64})$/;

const ImageBody = T.Object(
  {
    tenant: Name,
    app: Name,
    release: T.Integer({ minimum: 1 }),
    service: Name,
    image: T.String({
      pattern: BY_DIGEST.source,
      description: "the image by digest: HOST:PORT/REPO@sha256:…",
    }),
  },
  { additionalProperties: false },
);

const CredentialsBody = T.Object(
  {
    serve: T.Optional(
      T.String({
        pattern: "^(?:[A-Za-z0-9.-]{1,253}|\\[[0-9A-Fa-f:.]{2,45}\\]):[0-9]{1,5}$",
        description: "HOST:PORT the asking agent serves the registry on: a certificate for HOST comes back",
      }),
    ),
  },
  { additionalProperties: false },
);

export function registryRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const { store } = deps;

  api.post(
    "/registry/credentials",
    {
      schema: {
        summary:
          "The local registries' credential and CA, and a TLS certificate for the agent that serves one",
        description:
          "A registry off loopback serves TLS with a certificate of herd's registry CA and basic auth with this one user; engines pull and push with it. The password is kept in the secret store.",
        tags: ["agent protocol"],
        body: CredentialsBody,
      },
    },
    async (req) => {
      const serve = (req.body as { serve?: string } | undefined)?.serve;
      return deps.registry.answer(serve?.slice(0, serve.lastIndexOf(":")).replace(/^\[|\]$/g, ""));
    },
  );

  api.post(
    "/registry/images",
    {
      schema: {
        summary:
          "An agent ran this image (by digest) for a release's service: the registry keeps it with the release",
        tags: ["agent protocol"],
        body: ImageBody,
      },
    },
    async (req) => {
      const b = req.body as { tenant: string; app: string; release: number; service: string; image: string };
      const key = releaseKey(b.tenant, b.app, b.release);
      // Two agents may report at once: read, merge and write until the write is the latest.
      let recorded = false;
      await updateObject<Release>(store, "release", key, (o) => {
        if (!o) throw notFound(`release: ${b.app} has no release ${b.release} in tenant ${b.tenant}`);
        if (!(b.service in o.value.services))
          throw notFound(`service: release ${b.release} of ${b.app} has no service ${b.service}`);
        recorded = o.value.images?.[b.service] !== b.image;
        return recorded ? { ...o.value, images: { ...o.value.images, [b.service]: b.image } } : undefined;
      });
      return { recorded };
    },
  );

  api.get(
    "/registry/kept",
    {
      schema: {
        summary: "The images the registry's collection keeps: those of every release herd keeps",
        description:
          "`digests`: every digest a kept release's instances ran (reported by agents) or its `image:` names by digest; `images`: its `image:` references by tag.",
        tags: ["agent protocol"],
      },
    },
    async () => {
      const digests = new Set<string>();
      const images = new Set<string>();
      for (const { value: r } of (await store.list<Release>("release")).items) {
        const refs = [...Object.values(r.images ?? {}), ...Object.values(r.services).map((s) => s.image)];
        for (const ref of refs) {
          if (!ref) continue;
          const digest = BY_DIGEST.exec(ref)?.[1];
          if (digest) digests.add(digest);
          else images.add(ref);
        }
      }
      return { digests: [...digests].sort(), images: [...images].sort() };
    },
  );
}
