/**
 * Environments (docs/releases.md, "Environments and promotion"):
 *
 *   herd pipelines create NAME --stage staging=APP --stage production=APP   POST /pipelines
 *   herd pipelines [list] | show NAME | delete NAME                         GET|DELETE /pipelines[/:name]
 *   herd promote --app A|--pipeline P --from STAGE --to STAGE [--version N]
 *        POST /pipelines/:name/promote ─► follows the target's deploy like `herd deploy`
 *   herd previews [list] | destroy NAME --app A                             GET /previews, DELETE /apps/:app/previews/:name
 */

import type { Deploy } from "../model/objects.ts";
import { type Pipeline, type Preview, parseStage, validateStages } from "../model/pipeline.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { parseVersion, UsageError } from "./args.ts";
import {
  type CliContext,
  type CommandSpec,
  type FlagValues,
  printJson,
  println,
  stringFlag,
} from "./context.ts";
import { followDeploy } from "./deploy.ts";
import { formatTime, renderTable } from "./format.ts";
import type { Items } from "./types.ts";

/** A stage as GET /pipelines/:name shows it. */
interface StageView {
  name: string;
  app: string;
  exists: boolean;
  release: number | null;
  slug: string | null;
  promotedFrom?: { app: string; version: number };
}

const stagesOf = (values: FlagValues): string[] => {
  const v = values.stage;
  return Array.isArray(v)
    ? v.filter((s): s is string => typeof s === "string")
    : typeof v === "string"
      ? [v]
      : [];
};

/** `herd pipelines …`. */
export const pipelinesCommand: CommandSpec = {
  name: "pipelines",
  usage: [
    "herd pipelines [list]",
    "herd pipelines create NAME --stage STAGE=APP --stage STAGE=APP…",
    "herd pipelines show NAME",
    "herd pipelines delete NAME",
  ].join("\n"),
  summary:
    "Group apps as environments in promotion order (e.g. staging → production); `herd promote` ships a\n" +
    "stage's release to a later stage without a rebuild. Deleting a pipeline keeps its apps.",
  flags: [["--stage STAGE=APP", "one environment and its app, in order (2 to 10)"]],
  options: { stage: { type: "string", multiple: true } },
  async run(ctx, values, positionals) {
    const [action = "list", name, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "pipelines");
    const client = await ctx.client();
    if (action === "list") {
      const reply = await client.get<Items<Pipeline>>("/pipelines");
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else if (reply.items.length === 0)
        println(ctx.stdout, "No pipelines (herd pipelines create NAME --stage …).");
      else
        println(
          ctx.stdout,
          renderTable(
            ["pipeline", "stages"],
            reply.items.map((p) => [p.name, p.stages.map((s) => `${s.name}=${s.app}`).join(" → ")]),
          ),
        );
      return 0;
    }
    if (!name) throw new UsageError(`pipelines ${action} needs a pipeline NAME`, "pipelines");
    const path = `/pipelines/${encodeURIComponent(name)}`;
    if (action === "create") {
      const stages = [];
      for (const text of stagesOf(values)) {
        const s = parseStage(text);
        if (typeof s === "string") throw new UsageError(`--stage: ${s}`, "pipelines");
        stages.push(s);
      }
      const problems = validateStages(stages);
      if (problems.length > 0)
        throw new UsageError(`${problems[0]!.field}: ${problems[0]!.message}`, "pipelines");
      const p = await client.post<Pipeline>("/pipelines", { name, stages });
      if (ctx.flags.json) printJson(ctx.stdout, p);
      else
        println(ctx.stdout, `pipeline ${p.name}: ${p.stages.map((s) => `${s.name} (${s.app})`).join(" → ")}`);
      return 0;
    }
    if (action === "show") {
      const p = await client.get<Omit<Pipeline, "stages"> & { stages: StageView[] }>(path);
      if (ctx.flags.json) printJson(ctx.stdout, p);
      else
        println(
          ctx.stdout,
          renderTable(
            ["stage", "app", "release", "slug", "promoted from"],
            p.stages.map((s) => [
              s.name,
              s.exists ? s.app : `${s.app} (not created yet)`,
              s.release === null ? "-" : `v${s.release}`,
              s.slug ? s.slug.slice(0, 12) : "-",
              s.promotedFrom ? `${s.promotedFrom.app} v${s.promotedFrom.version}` : "",
            ]),
          ),
        );
      return 0;
    }
    if (action === "delete") {
      await client.delete(path);
      println(ctx.stdout, `pipeline ${name} deleted (its apps stay)`);
      return 0;
    }
    throw new UsageError(`unknown pipelines action: ${action}`, "pipelines");
  },
};

/** The pipeline `--pipeline` names, else the one pipeline that has the app among its stages. */
async function pipelineOf(ctx: CliContext, values: FlagValues): Promise<string> {
  const named = stringFlag(values, "pipeline");
  if (named) return named;
  const app = await resolveApp(ctx, stringFlag(values, "app"), "promote");
  const all = (await (await ctx.client()).get<Items<Pipeline>>("/pipelines")).items;
  const found = all.filter((p) => p.stages.some((s) => s.app === app));
  if (found.length === 1) return found[0]!.name;
  if (found.length === 0)
    throw new UsageError(`app ${app} is in no pipeline (herd pipelines create)`, "promote");
  throw new UsageError(
    `app ${app} is in pipelines ${found.map((p) => p.name).join(", ")}: name one with --pipeline`,
    "promote",
  );
}

/** `herd promote --app A --from staging --to production`. */
export const promoteCommand: CommandSpec = {
  name: "promote",
  usage: "herd promote [--app NAME | --pipeline NAME] --from STAGE --to STAGE [--version N]",
  summary:
    "Ship the release a stage serves (or --version N of it) to a later stage's app: the same slug, no\n" +
    "rebuild. The target keeps its env values, secrets, config, instance counts and real-domain routes.\n" +
    "Follows the target's rollout like `herd deploy`.",
  flags: [
    [APP_FLAG_HELP[0], "an app of the pipeline (default: as for deploy); finds its pipeline"],
    ["--pipeline NAME", "the pipeline (when the app is in several)"],
    ["--from STAGE", "the stage to promote from"],
    ["--to STAGE", "a later stage"],
    ["--version N", "the source's release (default: the one it serves)"],
  ],
  options: {
    app: { type: "string" },
    pipeline: { type: "string" },
    from: { type: "string" },
    to: { type: "string" },
    version: { type: "string" },
  },
  async run(ctx, values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "promote");
    const from = stringFlag(values, "from");
    const to = stringFlag(values, "to");
    if (!from || !to) throw new UsageError("promote needs --from STAGE and --to STAGE", "promote");
    const v = stringFlag(values, "version");
    const version = v === undefined ? undefined : parseVersion(v, "promote");
    const pipeline = await pipelineOf(ctx, values);
    const client = await ctx.client();
    const reply = await client.post<{
      deploy: Deploy;
      from: { stage: string; app: string; version: number; slug: string };
      to: { stage: string; app: string };
    }>(`/pipelines/${encodeURIComponent(pipeline)}/promote`, { from, to, ...(version ? { version } : {}) });
    if (ctx.flags.json) ctx.stdout.write(`${JSON.stringify(reply)}\n`);
    else
      println(
        ctx.stdout,
        `-----> Promoting ${reply.from.app} v${reply.from.version} (${reply.from.stage}) to ${reply.to.app} (${reply.to.stage}): slug ${reply.from.slug.slice(0, 12)}, no build (deploy ${reply.deploy.id})`,
      );
    return followDeploy(ctx, client, reply.deploy);
  },
};

/** `herd previews [list] | destroy NAME --app A`. */
export const previewsCommand: CommandSpec = {
  name: "previews",
  usage: ["herd previews [list]", "herd previews destroy NAME [--app NAME]"].join("\n"),
  summary:
    "Preview apps (`herd deploy --preview NAME`): each one's app, host and when it is destroyed;\n" +
    "destroy removes one now.",
  flags: [APP_FLAG_HELP],
  options: { app: { type: "string" } },
  async run(ctx, values, positionals) {
    const [action = "list", name, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "previews");
    const client = await ctx.client();
    if (action === "list") {
      const reply = await client.get<Items<Preview>>("/previews");
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else if (reply.items.length === 0) println(ctx.stdout, "No preview apps (herd deploy --preview NAME).");
      else {
        const now = ctx.now();
        println(
          ctx.stdout,
          renderTable(
            ["preview", "of", "app", "host", "destroyed at"],
            reply.items.map((p) => [
              p.name,
              p.of,
              p.app,
              `${p.app}.localhost`,
              Date.parse(p.expiresAt) <= now ? "expired (destroying)" : formatTime(p.expiresAt),
            ]),
          ),
        );
      }
      return 0;
    }
    if (action === "destroy") {
      if (!name) throw new UsageError("previews destroy needs the preview NAME", "previews");
      const app = await resolveApp(ctx, stringFlag(values, "app"), "previews");
      const r = await client.delete<{ app: string }>(
        `/apps/${encodeURIComponent(app)}/previews/${encodeURIComponent(name)}`,
      );
      println(ctx.stdout, `destroying preview app ${r.app}`);
      return 0;
    }
    throw new UsageError(`unknown previews action: ${action}`, "previews");
  },
};
