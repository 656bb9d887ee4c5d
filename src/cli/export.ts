/**
 * `herd export kubernetes [--app NAME] [--out DIR] [--image REF]`: the app's
 * current release as Kubernetes manifests (docs/kubernetes.md).
 *
 *   GET /apps/:app/export/kubernetes ─► YAML on stdout (--- between objects)
 *                                    └► --out DIR: one <kind>-<name>.yaml per object
 *   warnings (what the manifests do not say) ─► stderr
 */

import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type KubernetesExport, manifestFileName, toYaml } from "../export/kubernetes.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";

type ExportReply = KubernetesExport & { app: string; release: number; image: string };

export const exportCommand: CommandSpec = {
  name: "export",
  usage: "herd export kubernetes [--app NAME] [--out DIR] [--image REF]",
  summary:
    "Write the app's current release as Kubernetes manifests: Deployments (StatefulSets with a volume\n" +
    "claim for pets), Services, an Ingress from the routes, autoscaling/v2 HPAs, PodDisruptionBudgets,\n" +
    "CronJobs for scheduled jobs and a Secret with placeholders (never values). YAML on stdout, or one\n" +
    "file per object in --out DIR; what herd does that the manifests do not say goes to stderr as\n" +
    "warnings (docs/kubernetes.md).",
  flags: [
    APP_FLAG_HELP,
    ["--out DIR", "write one <kind>-<name>.yaml per object into DIR (made when missing)"],
    ["--image REF", "the release's container image (default herd.local/<tenant>/<app>:v<release>)"],
  ],
  options: { app: { type: "string" }, out: { type: "string" }, image: { type: "string" } },
  async run(ctx, values, positionals) {
    const [what, ...extra] = positionals;
    if (what !== "kubernetes")
      throw new UsageError(
        what ? `unknown export format: ${what}` : "export needs a format: kubernetes",
        "export",
      );
    if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "export");
    const app = await resolveApp(ctx, stringFlag(values, "app"), "export");
    const image = stringFlag(values, "image");
    const reply = await (await ctx.client()).get<ExportReply>(
      `/apps/${encodeURIComponent(app)}/export/kubernetes`,
      image ? { image } : undefined,
    );
    for (const w of reply.warnings) ctx.stderr.write(`warning: ${w}\n`);
    if (ctx.flags.json) {
      printJson(ctx.stdout, reply);
      return 0;
    }
    const out = stringFlag(values, "out");
    if (!out) {
      ctx.stdout.write(toYaml(reply.objects));
      return 0;
    }
    const dir = resolve(ctx.cwd, out);
    await mkdir(dir, { recursive: true });
    for (const o of reply.objects) await writeFile(join(dir, manifestFileName(o)), toYaml([o]));
    println(ctx.stdout, `wrote ${reply.objects.length} manifests of ${app} v${reply.release} to ${dir}:`);
    for (const o of reply.objects) println(ctx.stdout, `  ${manifestFileName(o)}`);
    return 0;
  },
};
