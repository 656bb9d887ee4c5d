/**
 * The `--machine-*` flags of `herd up` and `herd server`: a machine provider
 * asked for machines when instances fit nowhere, and the idle delay after
 * which its machines are handed back (docs/machine-provider.md).
 */

import { readFileSync } from "node:fs";
import { HerdError } from "../common/errors.ts";
import { machineProvider } from "../controllers/machine-provider.ts";
import type { MachineProviderOptions } from "../daemons/control-plane.ts";
import { parseDuration } from "../observe/promql/parser.ts";

export const MACHINE_FLAGS = {
  "machine-provider": { type: "string" },
  "machine-provider-secret-file": { type: "string" },
  "machine-idle": { type: "string" },
  "machine-wait": { type: "string" },
  "machine-max": { type: "string" },
} as const;

export const MACHINE_HELP = `Machines: [--machine-provider exec:/path/to/cmd | https://URL [--machine-provider-secret-file FILE]]
[--machine-idle 10m] [--machine-wait 10s] [--machine-max 10] when instances have fit on no
node for --machine-wait, the provider is asked for machines (JSON on the command's stdin, or
a POST signed with the secret) with a join token; its machines without instances for
--machine-idle are cordoned and handed back; at most --machine-max of them at once
(docs/machine-provider.md).`;

/** The machine provider the flags name, or undefined without --machine-provider; a HerdError names a bad flag. */
export function machinesOf(v: Record<string, unknown>): MachineProviderOptions | undefined {
  const provider = v["machine-provider"] as string | undefined;
  const others = ["machine-provider-secret-file", "machine-idle", "machine-wait", "machine-max"].filter(
    (f) => v[f] !== undefined,
  );
  if (provider === undefined) {
    if (others.length > 0)
      throw new HerdError("invalid", `--${others[0]} is for a machine provider: add --machine-provider`);
    return undefined;
  }
  const secretFile = v["machine-provider-secret-file"] as string | undefined;
  let secret: string | undefined;
  if (secretFile !== undefined) {
    try {
      secret = readFileSync(secretFile, "utf8").trim();
    } catch (err) {
      throw new HerdError(
        "invalid",
        `--machine-provider-secret-file ${secretFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    if (secret.length < 16)
      throw new HerdError(
        "invalid",
        `--machine-provider-secret-file ${secretFile}: use a secret of 16 characters or more`,
      );
  }
  // Checked here too, so the flag is named before anything starts.
  machineProvider(provider, secret ? { secret } : {});
  const settings: MachineProviderOptions["settings"] = {};
  if (v["machine-idle"] !== undefined) settings.idleMs = duration(v["machine-idle"], "machine-idle");
  if (v["machine-wait"] !== undefined) settings.debounceMs = duration(v["machine-wait"], "machine-wait");
  if (v["machine-max"] !== undefined) {
    const n = Number(v["machine-max"]);
    if (!Number.isInteger(n) || n < 1 || n > 1000)
      throw new HerdError(
        "invalid",
        `--machine-max must be a whole number from 1 to 1000, got ${v["machine-max"]}`,
      );
    settings.maxMachines = n;
  }
  return { provider, ...(secret ? { secret } : {}), settings };
}

function duration(value: unknown, name: string): number {
  const ms = parseDuration(String(value));
  if (ms === undefined || ms < 1000)
    throw new HerdError(
      "invalid",
      `--${name} must be a duration like 30s or 10m (at least 1s), got ${value}`,
    );
  return ms;
}
