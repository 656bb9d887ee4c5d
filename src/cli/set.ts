/**
 * `herd set apply|diff|history|rollback`: the version set of a tenant's apps
 * (herd.set.yaml; docs/releases.md).
 *
 *   apply    POST /sets ─► follows GET /sets/:name/versions/:v until applied or rolled back
 *   diff     POST /sets/diff ─► APP | SERVING | SET | CHANGE
 *   history  GET  /sets/:name ─► VERSION | STATE | CREATED | APPS | MESSAGE
 *   rollback POST /sets/:name/rollback[?version=N] ─► followed like apply
 */

import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parse } from "yaml";
import { HerdError } from "../common/errors.ts";
import {
  type SetDiffEntry,
  type SetManifest,
  type VersionSet,
  validateSetManifest,
} from "../model/version-set.ts";
import type { ApiClient } from "./api-client.ts";
import { UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatTime, renderTable } from "./format.ts";
import type { Items } from "./types.ts";

const ACTIONS = ["apply", "diff", "history", "rollback"] as const;

async function readSetFile(ctx: CliContext, file: string): Promise<SetManifest> {
  const path = resolve(ctx.cwd, file);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new HerdError("invalid", `${file}: cannot read it (herd set apply -f FILE names another file)`);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new HerdError("invalid", `${file}: ${(err as Error).message}`);
  }
  return validateSetManifest(doc, file);
}

/** One line per step, as the apply goes. */
function stepLine(s: VersionSet["steps"][number]): string {
  const what: Record<typeof s.state, string> = {
    pending: "waits",
    moving: `moving to v${s.version}${s.config ? ` with config v${s.config}` : ""}${s.deploy ? ` (deploy ${s.deploy})` : ""}`,
    done: `runs v${s.version}${s.config ? ` with config v${s.config}` : ""}, healthy`,
    unchanged: `already runs v${s.version}`,
    failed: `failed to move to v${s.version}`,
    reverted: `back to ${s.from === null || s.from === undefined ? "what it ran" : `v${s.from}`}`,
  };
  return `${s.app}: ${what[s.state]}`;
}

/** Prints each step's change until the set is applied or rolled back; 0 when applied. */
async function follow(ctx: CliContext, client: ApiClient, set: VersionSet): Promise<number> {
  const path = `/sets/${encodeURIComponent(set.name)}/versions/${set.version}`;
  const said = new Set<string>();
  println(
    ctx.stdout,
    `-----> set ${set.name} v${set.version}: ${set.steps.map((s) => `${s.app} v${s.version}`).join(" → ")}`,
  );
  const signal = ctx.interrupt();
  let cur = set;
  for (;;) {
    for (const s of cur.steps) {
      const line = stepLine(s);
      if (s.state !== "pending" && !said.has(line)) {
        said.add(line);
        println(ctx.stdout, `-----> ${line}`);
      }
    }
    if (cur.state === "applied" || cur.state === "rolled_back") break;
    if (signal.aborted) {
      println(ctx.stdout, `stopped following; the set goes on (herd set history --set ${set.name})`);
      return 130;
    }
    await new Promise((r) => setTimeout(r, 500));
    cur = await client.get<VersionSet>(path);
  }
  println(ctx.stdout, `set ${cur.name} v${cur.version} ${cur.state.replace("_", " ")}: ${cur.message}`);
  return cur.state === "applied" ? 0 : 1;
}

export const setCommand: CommandSpec = {
  name: "set",
  usage:
    "herd set apply|diff [-f herd.set.yaml] [--no-wait]\nherd set history|rollback [--set NAME] [--to N]",
  summary:
    "The version set: herd.set.yaml pins apps to release versions, with dependencies between them. apply\n" +
    "moves them dependencies first, each healthy before its dependents, and rolls back to the previous set\n" +
    "when one fails; diff shows what would change; history lists every version; rollback applies an\n" +
    "earlier one again (docs/releases.md).",
  flags: [
    ["-f, --file FILE", "the set file (default herd.set.yaml)"],
    ["--set NAME", "the set for history and rollback (default: default)"],
    ["--to N", "rollback: the set version to apply again (default: the applied one before the current)"],
    ["--no-wait", "return once the set is stored; do not follow it"],
  ],
  options: {
    file: { type: "string", short: "f" },
    set: { type: "string" },
    to: { type: "string" },
    "no-wait": { type: "boolean" },
  },
  async run(ctx, values, positionals) {
    const [what, ...extra] = positionals;
    const action = ACTIONS.find((a) => a === what);
    if (action === undefined)
      throw new UsageError(
        what ? `unknown set action: ${what}` : `set needs an action: ${ACTIONS.join(", ")}`,
        "set",
      );
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "set");
    const client = await ctx.client();
    const wait = values["no-wait"] !== true && !ctx.flags.json;
    if (action === "apply" || action === "diff") {
      const manifest = await readSetFile(ctx, stringFlag(values, "file") ?? "herd.set.yaml");
      if (action === "diff") {
        const reply = await client.post<Items<SetDiffEntry>>("/sets/diff", manifest);
        if (ctx.flags.json) printJson(ctx.stdout, reply);
        else
          println(
            ctx.stdout,
            renderTable(
              ["app", "serving", "set", "change", "config"],
              reply.items.map((e) => [
                e.app,
                e.serving === null ? "-" : `v${e.serving}`,
                `v${e.target}`,
                e.change,
                e.config
                  ? `${e.config.serving ? `v${e.config.serving}` : "none"} → v${e.config.target} (${e.config.change})`
                  : "-",
              ]),
            ),
          );
        return 0;
      }
      const set = await client.post<VersionSet>("/sets", manifest);
      if (ctx.flags.json) printJson(ctx.stdout, set);
      return wait ? follow(ctx, client, set) : 0;
    }
    const name = stringFlag(values, "set") ?? "default";
    if (action === "history") {
      const reply = await client.get<Items<VersionSet>>(`/sets/${encodeURIComponent(name)}`);
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else if (reply.items.length === 0)
        println(ctx.stdout, `set ${name} has no versions yet (herd set apply)`);
      else
        println(
          ctx.stdout,
          renderTable(
            ["version", "state", "created", "apps", "message"],
            [...reply.items]
              .reverse()
              .map((s) => [
                `v${s.version}${s.rollbackOf ? ` (rollback to v${s.rollbackOf})` : ""}`,
                s.state.replace("_", " "),
                formatTime(s.createdAt),
                s.steps.map((p) => `${p.app} v${p.version}`).join(", "),
                s.message,
              ]),
          ),
        );
      return 0;
    }
    const to = stringFlag(values, "to");
    if (to !== undefined && !/^v?[1-9][0-9]*$/.test(to))
      throw new UsageError(`--to must be a set version like 3 or v3; got ${to}`, "set");
    const set = await client.post<VersionSet>(
      `/sets/${encodeURIComponent(name)}/rollback`,
      undefined,
      to === undefined ? undefined : { version: to.replace(/^v/, "") },
    );
    if (ctx.flags.json) printJson(ctx.stdout, set);
    return wait ? follow(ctx, client, set) : 0;
  },
};
