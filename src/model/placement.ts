/**
 * Where a service's instances may run and which nodes they prefer: the
 * `placement` block of a service in herd.yaml, and its normalised form.
 */

import { type Static, Type as T } from "@sinclair/typebox";

const LabelKey = T.String({
  pattern: "^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62}[A-Za-z0-9])?$",
  description: "a label key: letters, digits, . _ / -",
});
const LabelValue = T.String({ maxLength: 63, pattern: "^[A-Za-z0-9._-]*$" });
const ServiceName = T.String({
  pattern: "^[a-z][a-z0-9-]{0,39}$",
  description: "a service of the same app",
});

const Term = T.Object(
  {
    service: ServiceName,
    required: T.Optional(
      T.Boolean({ description: "true: never otherwise; false (default): preferred when possible" }),
    ),
  },
  { additionalProperties: false },
);

export const PlacementSchema = T.Object(
  {
    strategy: T.Optional(
      T.Union([T.Literal("spread"), T.Literal("binpack")], {
        description:
          "spread (default: the most free node, replicas apart) or binpack (the fullest node that fits)",
      }),
    ),
    nodeSelector: T.Optional(
      T.Record(LabelKey, LabelValue, {
        additionalProperties: false,
        description: "only nodes with all these labels",
      }),
    ),
    replicas: T.Optional(
      T.Union([T.Literal("apart"), T.Literal("prefer-apart")], {
        description: "apart: never two replicas on one node; prefer-apart (default with spread)",
      }),
    ),
    spreadBy: T.Optional(LabelKey),
    affinity: T.Optional(T.Array(Term, { maxItems: 10, description: "run next to these services" })),
    antiAffinity: T.Optional(T.Array(Term, { maxItems: 10, description: "keep away from these services" })),
    tolerations: T.Optional(
      T.Array(T.Object({ key: LabelKey, value: T.Optional(LabelValue) }, { additionalProperties: false }), {
        maxItems: 20,
        description: "taints of nodes this service may run on",
      }),
    ),
  },
  { additionalProperties: false },
);

export type PlacementManifest = Static<typeof PlacementSchema>;

/** The normalised placement a release stores: service names stay app-local. */
export interface PlacementSpec {
  strategy: "spread" | "binpack";
  nodeSelector?: Record<string, string>;
  spreadBy?: string;
  affinity?: { service: string; required: boolean }[];
  antiAffinity?: { service: string; required: boolean }[];
  tolerations?: { key: string; value?: string }[];
}

/** Fills in defaults; `apart` replicas become a required anti-affinity to the service itself. */
export function normalizePlacement(
  service: string,
  p: PlacementManifest | undefined,
): PlacementSpec | undefined {
  if (p === undefined) return undefined;
  const terms = (list: Static<typeof Term>[] | undefined) =>
    list?.map((t) => ({ service: t.service, required: t.required ?? false }));
  const anti = terms(p.antiAffinity) ?? [];
  if (p.replicas === "apart") anti.push({ service, required: true });
  return {
    strategy: p.strategy ?? "spread",
    ...(p.nodeSelector ? { nodeSelector: p.nodeSelector } : {}),
    ...(p.spreadBy ? { spreadBy: p.spreadBy } : {}),
    ...(p.affinity ? { affinity: terms(p.affinity) } : {}),
    ...(anti.length > 0 ? { antiAffinity: anti } : {}),
    ...(p.tolerations ? { tolerations: p.tolerations } : {}),
  };
}

/** Service names a placement refers to (checked against the app's services). */
export function placementServices(p: PlacementManifest | undefined): string[] {
  return [...(p?.affinity ?? []), ...(p?.antiAffinity ?? [])].map((t) => t.service);
}
