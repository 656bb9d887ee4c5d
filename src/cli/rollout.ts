/**
 * `herd rollout status|promote|pause|resume|abort [--app NAME] [--service S]`:
 * a canary's step, weight and analyses, a blue/green release's preview host,
 * and the hands on them (docs/releases.md).
 *
 *   GET  /apps/:app/rollout            ─► SERVICE | STRATEGY | RELEASE | PHASE | STEP | WEIGHT, then the analyses
 *   POST /apps/:app/rollout/<action>   ─► the services it changed
 */

import type { Service } from "../model/objects.ts";
import type { CanaryStep, ProgressiveState } from "../model/progressive.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatTime, renderTable } from "./format.ts";
import type { Items } from "./types.ts";

/** One service's rollout, as GET /apps/:app/rollout answers. */
export interface RolloutView {
  service: string;
  strategy: string;
  release: number;
  state: Service["state"];
  message: string;
  progressive?: ProgressiveState & { steps: CanaryStep[]; previewHost?: string };
}

const ACTIONS = ["status", "promote", "pause", "resume", "abort"] as const;

/** The status as people read it: one row per service, then each running rollout's analyses. */
export function rolloutText(items: readonly RolloutView[]): string {
  const rows = items.map((s) => {
    const p = s.progressive;
    const step =
      p?.strategy === "canary" && p.phase === "steps" ? `${p.step + 1}/${p.steps.length}` : p ? "-" : "";
    const phase = p ? `${p.phase}${p.paused ? " (paused)" : ""}` : s.state;
    return [
      s.service,
      s.strategy,
      p ? `v${p.release} beside v${p.baseline}` : `v${s.release}`,
      phase,
      step,
      p ? `${p.weight}%` : "",
    ];
  });
  const parts = [renderTable(["service", "strategy", "release", "phase", "step", "weight"], rows)];
  for (const s of items) {
    const p = s.progressive;
    if (!p) continue;
    if (p.previewHost) parts.push(`\n${s.service}: preview host ${p.previewHost}`);
    if (p.analyses.length === 0) continue;
    const analyses = [...p.analyses]
      .reverse()
      .map((a) => [formatTime(a.at), `${a.step + 1} (${a.weight}%)`, a.verdict, a.summary]);
    parts.push(
      `\n${s.service}: analyses, newest first`,
      renderTable(["time", "step", "verdict", "figures"], analyses),
    );
  }
  return parts.join("\n");
}

export const rolloutCommand: CommandSpec = {
  name: "rollout",
  usage: "herd rollout [status]|promote|pause|resume|abort [--app NAME] [--service NAME]",
  summary:
    "Canary and blue/green rollouts (herd.yaml rollout.strategy): status (the default) shows each service's step, weight\n" +
    "and analyses; promote skips the remaining steps (or switches to the blue/green release); pause holds\n" +
    "the step (analysis still aborts); abort stops the new release and fails the deploy (docs/releases.md).",
  flags: [APP_FLAG_HELP, ["--service NAME", "only this service (default: every service in a rollout)"]],
  options: { app: { type: "string" }, service: { type: "string" } },
  async run(ctx, values, positionals) {
    const [what = "status", ...extra] = positionals;
    const action = ACTIONS.find((a) => a === what);
    if (action === undefined)
      throw new UsageError(`unknown rollout action: ${what} (one of ${ACTIONS.join(", ")})`, "rollout");
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "rollout");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "rollout");
    const service = stringFlag(values, "service");
    const query = service ? { service } : undefined;
    const client = await ctx.client();
    const path = `/apps/${encodeURIComponent(app)}/rollout`;
    const reply =
      action === "status"
        ? await client.get<Items<RolloutView>>(path, query)
        : await client.post<Items<RolloutView>>(`${path}/${action}`, undefined, query);
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else if (action !== "status") {
      const done = action === "abort" ? "aborted" : action === "pause" ? "paused" : `${action}d`;
      println(
        ctx.stdout,
        reply.items.length === 0
          ? `nothing to ${action}: already ${done}`
          : reply.items
              .map((s) => `${s.service}: rollout of v${s.progressive?.release ?? s.release} ${done}`)
              .join("\n"),
      );
    } else if (reply.items.length === 0) println(ctx.stdout, `${app} has no services.`);
    else println(ctx.stdout, rolloutText(reply.items));
    return 0;
  },
};
