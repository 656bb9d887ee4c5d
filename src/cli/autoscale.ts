/**
 * `herd autoscale status [--app NAME]`: per autoscaled service its count and
 * bounds, the target, the figures over the stable and panic windows with
 * what they ask for, the mode, and the last decisions with why.
 *
 *   GET /apps/:app/autoscale ─► SERVICE | INSTANCES | MIN..MAX | TARGET | MODE | STABLE | PANIC | LAST REQUEST
 *                              then per service: TIME | CHANGE | WHY
 */

import type { AutoscaleStatus } from "../controllers/autoscale.ts";
import { autoscaleTargetText as formatTarget } from "../model/service-spec.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatAge, formatTime, renderTable } from "./format.ts";
import type { Items } from "./types.ts";

const num = (v: number) => (Number.isInteger(v) ? String(v) : String(Number(v.toFixed(2))));
const secs = (ms: number) => `${num(ms / 1000)}s`;

/** A figure in the target's unit, with what it asks for: "83.2 rps → 2". */
function figure(t: AutoscaleStatus["target"], value: number | undefined, want: number | undefined): string {
  if (value === undefined) return "-";
  const shown = formatTarget({ ...t, value }).replace(/ of .*$/, "");
  return want === undefined ? shown : `${shown} → ${want}`;
}

/** The status as people read it: one table of services, then each one's last decisions. */
export function autoscaleText(items: readonly AutoscaleStatus[], now: number): string {
  const rows = items.map((s) => [
    s.service,
    String(s.instances),
    `${s.min}..${s.max}`,
    `${formatTarget(s.target)} per instance`,
    s.mode,
    `${figure(s.target, s.stable, s.stableWant)} (${secs(s.stableWindowMs)})`,
    `${figure(s.target, s.panic, s.panicWant)} (${secs(s.panicWindowMs)})`,
    formatAge(s.lastRequestAt, now),
  ]);
  const parts = [
    renderTable(
      ["service", "instances", "min..max", "target", "mode", "stable", "panic", "last request"],
      rows,
    ),
  ];
  for (const s of items) {
    if (s.decisions.length === 0) {
      parts.push(`\n${s.service}: no decision has changed its count yet.`);
      continue;
    }
    const decisions = [...s.decisions]
      .reverse()
      .map((d) => [
        formatTime(d.time),
        `${d.from} → ${d.to}${d.refused ? " (refused)" : ""}`,
        d.problem ? `${d.reason} — ${d.problem}` : d.reason,
      ]);
    parts.push(
      `\n${s.service}: last decisions, newest first`,
      renderTable(["time", "change", "why"], decisions),
    );
  }
  return parts.join("\n");
}

export const autoscaleCommand: CommandSpec = {
  name: "autoscale",
  usage: "herd autoscale [status] [--app NAME]",
  summary:
    "Show how the app's autoscaled services (herd.yaml autoscale:) scale: count and bounds, target,\n" +
    "the figures over the stable and panic windows and what they ask for, and the last decisions with why\n" +
    "(docs/autoscaling.md). Every decision is also an Autoscaled event (herd events).",
  flags: [APP_FLAG_HELP],
  options: { app: { type: "string" } },
  async run(ctx, values, positionals) {
    const [what = "status", ...extra] = positionals;
    if (what !== "status") throw new UsageError(`unknown autoscale action: ${what}`, "autoscale");
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "autoscale");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "autoscale");
    const reply = await (await ctx.client()).get<Items<AutoscaleStatus>>(
      `/apps/${encodeURIComponent(app)}/autoscale`,
    );
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (reply.items.length === 0)
      println(ctx.stdout, `${app} has no autoscaled service (add autoscale: to a service in herd.yaml).`);
    else println(ctx.stdout, autoscaleText(reply.items, ctx.now()));
    return 0;
  },
};
