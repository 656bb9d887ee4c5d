/**
 * A version set: the whole architecture in one manifest. `herd.set.yaml` pins
 * apps of a tenant to release versions, with dependencies between them; every
 * applied set is a numbered, stored VersionSet (controllers/set-controller.ts
 * moves the apps, dependencies first).
 *
 *   set: shop                  # optional, default "default"
 *   apps:
 *     db:  { version: 3 }
 *     api: { version: 5, dependsOn: [db] }
 *     web: { version: 7, config: 4, dependsOn: [api] }   # config: the app's config version (herd config)
 */

import { type Static, Type as T } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { HerdError } from "../common/errors.ts";
import { describeError, unescapePointer } from "./manifest-messages.ts";

const NAME = "^[a-z][a-z0-9-]{0,39}$";

/** The body of `POST /api/v1/sets`: herd.set.yaml as JSON. */
export const SetManifestSchema = T.Object(
  {
    set: T.Optional(T.String({ pattern: NAME, description: "the set's name (default: default)" })),
    apps: T.Record(
      T.String({ pattern: NAME }),
      T.Object(
        {
          version: T.Integer({ minimum: 1, description: "the release version (vN) the app runs" }),
          config: T.Optional(
            T.Integer({
              minimum: 1,
              description:
                "the app's config version (config center, app layer) it runs; absent: left as it is",
            }),
          ),
          dependsOn: T.Optional(
            T.Array(T.String({ pattern: NAME }), {
              maxItems: 64,
              uniqueItems: true,
              description: "apps of this set that move (and run healthy) before this one",
            }),
          ),
        },
        { additionalProperties: false },
      ),
      {
        minProperties: 1,
        maxProperties: 200,
        additionalProperties: false,
        description: "1 to 200 apps by name (lowercase letters, digits and dashes)",
      },
    ),
  },
  { additionalProperties: false },
);
export type SetManifest = Static<typeof SetManifestSchema>;

let compiledCheck: ReturnType<typeof TypeCompiler.Compile<typeof SetManifestSchema>> | undefined;
/** Compiled at first use, not when the module loads. */
const checkOf = () => {
  compiledCheck ??= TypeCompiler.Compile(SetManifestSchema);
  return compiledCheck;
};

/** Validates a parsed herd.set.yaml; a problem names its field. */
export function validateSetManifest(value: unknown, file = "herd.set.yaml"): SetManifest {
  const check = checkOf();
  if (!check.Check(value)) {
    const e = check.Errors(value).First();
    const field = (e?.path ?? "").split("/").filter(Boolean).map(unescapePointer).join(".") || "(root)";
    const message = e ? describeError(e.message, e.schema, e.value) : "invalid";
    throw new HerdError("invalid", `${file}: ${field}: ${message}`, [{ field, message }]);
  }
  for (const [app, entry] of Object.entries(value.apps)) {
    (entry.dependsOn ?? []).forEach((dep, n) => {
      const field = `apps.${app}.dependsOn.${n}`;
      if (dep === app || !(dep in value.apps)) {
        const message = dep === app ? `${app} cannot depend on itself` : `${dep} is not an app of this set`;
        throw new HerdError("invalid", `${file}: ${field}: ${message}`, [{ field, message }]);
      }
    });
  }
  return value;
}

/** Where one app of a set stands while the set is applied. */
export interface SetStep {
  app: string;
  /** The release version the set pins. */
  version: number;
  /** What served before the set moved it (null: nothing); the rollback target. */
  from?: number | null;
  /** The app's config version the set pins (absent: the set leaves its config alone). */
  config?: number;
  /** Its stable config version before the set moved it (0: none); where a rollback takes it back. */
  configFrom?: number;
  /** The deploy that moves it to `version`, once started. */
  deploy?: string;
  /** The deploy that moves it back to `from`, when the set rolls back. */
  revert?: string;
  state: "pending" | "moving" | "done" | "unchanged" | "failed" | "reverted";
  /** When it started moving and when it ran healthy (ISO). */
  startedAt?: string;
  doneAt?: string;
}

export type VersionSetState = "applying" | "applied" | "rolling_back" | "rolled_back";

/** One applied (or attempted) version of a set. Key `<tenant>/<set>/<version padded to 8>`. */
export interface VersionSet {
  tenant: string;
  name: string;
  version: number;
  createdAt: string;
  finishedAt?: string;
  apps: SetManifest["apps"];
  /** The apps in the order they move: dependencies first. */
  steps: SetStep[];
  state: VersionSetState;
  /** The set version that was applied before this one (null: none). */
  previous: number | null;
  /** A `herd set rollback` names the version whose apps it pins again. */
  rollbackOf?: number;
  message: string;
}

export function versionSetKey(tenant: string, name: string, version: number): string {
  return `${tenant}/${name}/${String(version).padStart(8, "0")}`;
}

/** What `herd set diff` shows per app: the version it serves now and the one the set pins. */
export interface SetDiffEntry {
  app: string;
  serving: number | null;
  target: number;
  change: "upgrade" | "downgrade" | "unchanged" | "new";
  /** With a pinned config: the config version in effect (0: none) and the pinned one. */
  config?: { serving: number; target: number; change: "changes" | "unchanged" };
}
