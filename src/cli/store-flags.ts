/**
 * The flags of the log and trace stores on `herd server` and `herd up`, and
 * the store options they make. Apart from the `herd logs` and `herd traces`
 * commands, so that a daemon does not load those commands' modules (and the
 * CLI's client and formatting with them).
 */

import { HerdError } from "../common/errors.ts";
import type { LogsOptions } from "../daemons/control-plane.ts";
import { parseBytes } from "../model/manifest.ts";
import { parseDurationMicros } from "../observe/traces/span.ts";
import type { TracesOptions } from "../observe/traces/traces.ts";

/** The server flags that bound logs.db: `--logs-retention 7d --logs-max-size 256Mi`. */
export const LOG_SERVER_FLAGS = {
  "logs-retention": { type: "string", default: "7d" },
  "logs-max-size": { type: "string", default: "256Mi" },
} as const;

/** LogsOptions from those flags; a HerdError naming the flag when one is wrong. */
export function logsOptionsFromFlags(v: Record<string, unknown>): LogsOptions {
  const retention = parseDurationMicros(String(v["logs-retention"] ?? "7d"));
  if (retention === null || retention < 60e6) {
    throw new HerdError(
      "invalid",
      `--logs-retention must be a duration of at least 1m (e.g. 7d), got ${v["logs-retention"]}`,
    );
  }
  let maxBytes: number;
  try {
    maxBytes = parseBytes(String(v["logs-max-size"] ?? "256Mi"));
  } catch {
    throw new HerdError(
      "invalid",
      `--logs-max-size must be a size like 256Mi or 2Gi, got ${v["logs-max-size"]}`,
    );
  }
  if (maxBytes < 1024 * 1024) throw new HerdError("invalid", "--logs-max-size must be at least 1Mi");
  return { maxAgeMs: retention / 1000, maxBytes };
}

/** The trace store's flags on `herd server` and `herd up`. */
export const TRACE_SERVER_FLAGS = {
  "traces-retention": { type: "string", default: "24h" },
  "traces-max-size": { type: "string", default: "512Mi" },
  "traces-forward": { type: "string" },
  "traces-forward-header": { type: "string", multiple: true },
  "grpc-port": { type: "string" },
} as const;

/** TracesOptions from those flags; a HerdError naming the flag when one is wrong. */
export function tracesOptionsFromFlags(v: Record<string, unknown>): TracesOptions {
  const retention = parseDurationMicros(String(v["traces-retention"] ?? "24h"));
  if (retention === null || retention < 60e6) {
    throw new HerdError(
      "invalid",
      `--traces-retention must be a duration of at least 1m (e.g. 24h), got ${v["traces-retention"]}`,
    );
  }
  let maxBytes: number;
  try {
    maxBytes = parseBytes(String(v["traces-max-size"] ?? "512Mi"));
  } catch {
    throw new HerdError(
      "invalid",
      `--traces-max-size must be a size like 512Mi or 2Gi, got ${v["traces-max-size"]}`,
    );
  }
  if (maxBytes < 1024 * 1024) throw new HerdError("invalid", "--traces-max-size must be at least 1Mi");
  const forward = v["traces-forward"] as string | undefined;
  if (forward !== undefined && !/^https?:\/\/[^/]/.test(forward)) {
    throw new HerdError(
      "invalid",
      `--traces-forward must be an http(s) URL such as http://collector:4318/v1/traces, got ${forward}`,
    );
  }
  const headers = headerFlags(v["traces-forward-header"], "traces-forward-header");
  return { maxAgeMs: retention / 1000, maxBytes, forwardUrl: forward, forwardHeaders: headers };
}

/** Repeated `--<flag> NAME=VALUE` flags as headers; a HerdError naming the flag for one without `=`. */
export function headerFlags(values: unknown, flag: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of (values as string[] | undefined) ?? []) {
    const eq = h.indexOf("=");
    if (eq < 1) throw new HerdError("invalid", `--${flag} must be NAME=VALUE, got ${h}`);
    headers[h.slice(0, eq).trim()] = h.slice(eq + 1).trim();
  }
  return headers;
}
