/**
 * `herd remediate …`: the remediation engine's rules, switches and decisions for an app.
 *
 *   herd remediate [status]                 GET  /apps/:app/remediation ─► switches, rules, recent decisions
 *   herd remediate pause | resume           POST /apps/:app/remediation/pause|resume
 *   herd remediate --dry-run | --no-dry-run PUT  /apps/:app/remediation {dryRun}
 *   herd remediate --budget N               PUT  {budgetPerHour}
 *   herd remediate rules set FILE | reset   PUT  {rules} (a YAML or JSON list) | {builtIn: true}
 */

import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import type { RemediationBody, RemediationPolicy, RemediationRule } from "../model/remediation.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CliContext, type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatAge, renderTable } from "./format.ts";

/** What `GET /apps/:app/remediation` answers (api/routes/remediation.ts). */
interface RemediationView extends RemediationPolicy {
  rules: RemediationRule[];
  builtIn: boolean;
  budget: { used: number; limit: number };
}

const USAGE = [
  "herd remediate [status] [--app NAME] [--evidence]",
  "herd remediate pause|resume [--app NAME]",
  "herd remediate --dry-run|--no-dry-run [--app NAME]",
  "herd remediate --budget N [--app NAME]",
  "herd remediate rules set FILE [--app NAME]",
  "herd remediate rules reset [--app NAME]",
].join("\n");

export const remediateCommand: CommandSpec = {
  name: "remediate",
  usage: USAGE,
  summary:
    "The remediation engine of an app: its rules, dry run, pause, budget, and the decisions it took with their evidence and outcome.\n" +
    "Decisions are also events (herd events: Remediation, RemediationOutcome). docs/remediation.md",
  flags: [
    APP_FLAG_HELP,
    ["--dry-run", "every rule decides and records, nothing is changed"],
    ["--no-dry-run", "the rules act again (a rule's own dryRun still holds)"],
    ["--budget N", "at most N changes per hour for the app"],
    ["--evidence", "status: every decision's evidence, one line each"],
  ],
  options: {
    app: { type: "string" },
    "dry-run": { type: "boolean" },
    "no-dry-run": { type: "boolean" },
    budget: { type: "string" },
    evidence: { type: "boolean" },
  },
  async run(ctx, values, positionals) {
    const app = await resolveApp(ctx, stringFlag(values, "app"), "remediate");
    const base = `/apps/${encodeURIComponent(app)}/remediation`;
    const client = await ctx.client();
    const [what, action, file, ...extra] = positionals;
    const body: RemediationBody = {};
    if (values["dry-run"] && values["no-dry-run"])
      throw new UsageError("--dry-run or --no-dry-run, not both", "remediate");
    if (values["dry-run"]) body.dryRun = true;
    if (values["no-dry-run"]) body.dryRun = false;
    const budget = stringFlag(values, "budget");
    if (budget !== undefined) {
      const n = Number(budget);
      if (!Number.isInteger(n) || n < 0)
        throw new UsageError(`--budget: ${budget} is not a whole number ≥ 0`, "remediate");
      body.budgetPerHour = n;
    }
    if (Object.keys(body).length > 0) {
      if (what !== undefined)
        throw new UsageError(`--dry-run and --budget go alone, not with ${what}`, "remediate");
      return show(ctx, app, await client.put<RemediationView>(base, body), values.evidence === true);
    }
    if (what === undefined || what === "status") {
      return show(ctx, app, await client.get<RemediationView>(base), values.evidence === true);
    }
    if (what === "pause" || what === "resume") {
      const view = await client.post<RemediationView>(`${base}/${what}`, {});
      if (ctx.flags.json) printJson(ctx.stdout, view);
      else
        println(
          ctx.stdout,
          what === "pause"
            ? `Remediation of ${app} paused: no decisions until herd remediate resume.`
            : `Remediation of ${app} resumed.`,
        );
      return 0;
    }
    if (what === "rules" && action === "reset") {
      return show(ctx, app, await client.put<RemediationView>(base, { builtIn: true }), false);
    }
    if (what === "rules" && action === "set") {
      if (!file || extra.length > 0)
        throw new UsageError("rules set needs one file (YAML or JSON: a list of rules)", "remediate");
      const parsed: unknown = parseYaml(await readFile(file, "utf8"));
      const rules = Array.isArray(parsed) ? parsed : (parsed as { rules?: unknown } | null)?.rules;
      if (!Array.isArray(rules))
        throw new UsageError(`${file}: expected a list of rules (or {rules: [...]})`, "remediate");
      return show(ctx, app, await client.put<RemediationView>(base, { rules } as RemediationBody), false);
    }
    throw new UsageError(
      `unknown remediate action: ${[what, action].filter(Boolean).join(" ")}`,
      "remediate",
    );
  },
};

function show(ctx: CliContext, app: string, v: RemediationView, evidence: boolean): number {
  if (ctx.flags.json) {
    printJson(ctx.stdout, v);
    return 0;
  }
  const mode = v.paused ? "paused" : v.dryRun ? "dry run (decides, changes nothing)" : "on";
  println(ctx.stdout, `Remediation of ${app}: ${mode}`);
  println(
    ctx.stdout,
    `Budget: ${v.budget.used} of ${v.budget.limit} changes in the last hour · rollback window ${v.releaseWindowS} s · outcome checked after ${v.outcomeAfterS} s`,
  );
  println(ctx.stdout);
  println(ctx.stdout, v.builtIn ? "Rules (built-in):" : "Rules:");
  println(
    ctx.stdout,
    renderTable(
      ["rule", "symptom", "service", "threshold", "window", "actions", "mode"],
      v.rules.map((r) => [
        r.name,
        r.symptom === "alert" ? `alert ${r.alert}` : r.symptom,
        r.service ?? "all",
        r.threshold === undefined ? "default" : String(r.threshold),
        r.windowS === undefined ? "default" : `${r.windowS}s`,
        r.actions.join(","),
        r.dryRun ? "dry run" : "on",
      ]),
    ),
  );
  if (v.throttles.length > 0) {
    println(ctx.stdout);
    println(ctx.stdout, "Throttles in force:");
    for (const t of v.throttles) {
      println(
        ctx.stdout,
        `  ${t.service}: concurrency lowered for ${t.for || "an overloaded service"} since ${formatAge(t.since, ctx.now())}`,
      );
    }
  }
  if ((v.degraded ?? []).length > 0) {
    println(ctx.stdout);
    println(ctx.stdout, "Degraded (routes answer their fallback):");
    for (const d of v.degraded ?? []) {
      println(
        ctx.stdout,
        `  ${d.service}: its calls to ${d.dependencies.join(", ")} failed; since ${formatAge(d.since, ctx.now())}`,
      );
    }
  }
  println(ctx.stdout);
  if (v.decisions.length === 0) {
    println(ctx.stdout, "No decisions yet.");
    return 0;
  }
  println(ctx.stdout, "Recent decisions (newest last):");
  const recent = v.decisions.slice(-10);
  println(
    ctx.stdout,
    renderTable(
      ["age", "rule", "service", "action", "target", "applied", "outcome"],
      recent.map((d) => [
        formatAge(d.at, ctx.now()),
        d.rule,
        d.service,
        d.action,
        d.target,
        d.dryRun ? "dry run" : (d.applied ?? "-"),
        d.outcome ?? (d.checkAt ? "pending" : "-"),
      ]),
    ),
  );
  for (const d of recent) {
    if (!evidence) continue;
    println(ctx.stdout);
    println(ctx.stdout, `${d.id} ${d.rule} → ${d.action} ${d.target}: ${d.reason}`);
    for (const line of d.evidence) println(ctx.stdout, `  ${line}`);
  }
  if (!evidence) println(ctx.stdout, "\n(--evidence shows why each was chosen; herd events shows them too)");
  return 0;
}
