/**
 * The environment an instance starts with, from its desired instance and
 * what the agent has for it, in order of precedence (later wins):
 *
 *   the config center's keys ─ the service's env ─ secret values ─ telemetry defaults
 *   (trace-defaults.ts) ─ HERD_SERVICE_<APP>_<SERVICE>_URL ─ PORT and HERD_* ─ config files' env ─ PATH
 *
 * The config's keys are env as a Heroku app's config vars are, read once at the
 * start (its files and feed follow changes); only names a shell can use are given.
 *
 * The telemetry defaults carry the ingest token and secrets their values:
 * the env goes to the process only, never into a log line or file.
 */

import { dirname, join } from "node:path";
import { readInternalFile, serviceEnv } from "../common/internal-caller.ts";
import type { ConfigEnv } from "../config-center/agent-feed.ts";
import type { DesiredInstance } from "../model/protocol.ts";
import { ENV_NAME } from "../model/service-spec.ts";
import { SYSTEM_PATH } from "./sandbox.ts";

/** What the agent has for one start. */
export interface InstanceEnvParts {
  port: number;
  /** The unpacked release. */
  appDir: string;
  /** HERD_DATA_DIR. */
  dataDir: string;
  /** The Node installation the app chose (engines.node); absent: the one that runs herd. */
  node?: string;
  /** OTEL_* and friends (traceDefaults). */
  telemetry: Record<string, string>;
  /** HERD_SERVICE_* URLs (internalServiceEnv). */
  services: Record<string, string>;
  /** The config center's env for its files, when the agent has a config feed. */
  config: ConfigEnv | undefined;
  /** The effective config's keys (files are not env) at this start. */
  configValues?: Record<string, string>;
}

/** The config's keys that can be env (names with `.` or `-` stay in the files and feed only). */
export function configKeysEnv(values: Record<string, string> | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(values ?? {})) if (ENV_NAME.test(name)) env[name] = value;
  return env;
}

/** The full env (PORT included) of one start of d. */
export function instanceEnv(d: DesiredInstance, parts: InstanceEnvParts): Record<string, string> {
  return {
    ...configKeysEnv(parts.configValues),
    ...d.run.env,
    ...d.secretEnv,
    ...parts.telemetry,
    ...parts.services,
    PORT: String(parts.port),
    HERD_INSTANCE: d.id,
    HERD_APP: d.app,
    HERD_SERVICE: d.service,
    HERD_RELEASE: String(d.release),
    HERD_DATA_DIR: parts.dataDir,
    ...parts.config,
    // The app's own tools first, then its chosen node (else herd's), so `node server.js` means a known node.
    PATH: [
      join(parts.appDir, "node_modules", ".bin"),
      parts.node ? join(parts.node, "bin") : dirname(process.execPath),
      d.run.env.PATH ?? SYSTEM_PATH,
    ].join(":"),
  };
}

/**
 * HERD_SERVICE_<APP>_<SERVICE>_URL for each service of the instance's tenant,
 * via the node's gateway (`internalGateway`: its internal.json); none without one.
 */
export function internalServiceEnv(
  internalGateway: string | undefined,
  d: DesiredInstance,
  services: readonly string[],
): Record<string, string> {
  const file = internalGateway === undefined ? null : readInternalFile(internalGateway);
  if (file === null) return {};
  return serviceEnv(file, { tenant: d.tenant, app: d.app, service: d.service }, services);
}
