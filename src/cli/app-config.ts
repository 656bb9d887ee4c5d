/**
 * `herd config …`: an app's config in the config center (docs/config.md):
 * keys and whole files, every change a version, history, diff, rollback,
 * gray release, who applied what; `--layer platform|middleware --name N`
 * works on the catalog's namespaces instead (platform admin).
 */

import { readFile } from "node:fs/promises";
import {
  type CatalogNamespace,
  type ConfigHead,
  type ConfigVersion,
  type ConfigVersionSummary,
  type EffectiveConfig,
  formatOfName,
} from "../model/config.ts";
import { APP_FLAG_HELP, resolveApp } from "./app-name.ts";
import { UsageError } from "./args.ts";
import {
  type CliContext,
  type CommandSpec,
  type FlagValues,
  printJson,
  println,
  stringFlag,
} from "./context.ts";
import { formatAge, renderTable } from "./format.ts";

const USAGE = [
  "herd config [list] [--app NAME] [--version N]",
  "herd config get NAME [--app NAME]",
  "herd config set KEY=VALUE… [--file NAME=PATH…] [-m MESSAGE] [--gray PERCENT | --gray-instances ID,… | --gray-labels K=V,…] [--app NAME]",
  "herd config unset NAME… [--app NAME]",
  "herd config use [--platform NAME@V|none] [--middleware NAME@V,…] [--app NAME]",
  "herd config history|status|promote|abort [--app NAME]",
  "herd config diff [FROM] [TO] [--app NAME]",
  "herd config rollback VERSION [--app NAME]",
  "herd config catalog",
  "herd config catalog-gray platform|middleware NAME@V [--tenants T,…] [--rollback]   (platform admin)",
  "herd config set|unset|history|diff … --layer platform|middleware --name NAME   (the catalog; set needs a platform admin)",
].join("\n");

interface InstanceStatusRow {
  id: string;
  service: string;
  node: string | null;
  target: number;
  applied?: number;
  gray: boolean;
  behind: boolean;
}

/** Where a command acts: an app's config, or a catalog namespace. */
type Target = { kind: "app"; app: string; base: string } | { kind: "catalog"; label: string; base: string };

async function targetOf(ctx: CliContext, values: FlagValues, action: string): Promise<Target> {
  const layer = stringFlag(values, "layer");
  if (layer === undefined || layer === "app") {
    const app = await resolveApp(ctx, stringFlag(values, "app"), "config");
    return { kind: "app", app, base: `/apps/${encodeURIComponent(app)}/config` };
  }
  if (layer !== "platform" && layer !== "middleware")
    throw new UsageError(`--layer is platform, middleware or app, not ${layer}`, "config");
  const name = stringFlag(values, "name");
  if (!name) throw new UsageError(`--layer ${layer} needs --name NAME`, "config");
  if (!["set", "unset", "history", "diff", "list", "get"].includes(action))
    throw new UsageError(
      `config ${action} is for apps; a catalog namespace has set, unset, history, diff, list and get`,
      "config",
    );
  return {
    kind: "catalog",
    label: `${layer} ${name}`,
    base: `/config/catalog/${layer}/${encodeURIComponent(name)}`,
  };
}

export const appConfigCommand: CommandSpec = {
  name: "config",
  usage: USAGE,
  summary:
    "An app's config: keys and files (JSON, YAML, properties, text), merged over the platform and middleware\n" +
    "versions it picks from the catalog. Every change is a version (author, message); running instances get it\n" +
    "without a restart: a file in their dir ($HERD_CONFIG_FILE) and a feed ($HERD_CONFIG_URL, long poll or SSE);\n" +
    "keys are env too, from the instance's next start.\n" +
    "A file that does not parse is refused and the running version stays. See docs/config.md.",
  flags: [
    APP_FLAG_HELP,
    ["--file NAME=PATH", "set: a whole file entry from PATH (format from its extension, or --format)"],
    ["--format FORMAT", "set --file: json, yaml, properties or text"],
    ["-m, --message TEXT", "set, unset, use, rollback: why (kept with the version)"],
    ["--gray PERCENT", "set: give the new version to this share of the instances first"],
    ["--gray-instances ID,…", "set: … to these instances first"],
    ["--gray-labels K=V,…", "set: … to instances on nodes with these labels (service=NAME: a service) first"],
    ["--platform NAME@V|none", "use: the platform version to merge over"],
    ["--middleware NAME@V,…", "use: the middleware versions to merge over, in order"],
    ["--version N", "list: an older version"],
    ["--layer platform|middleware", "work on a catalog namespace instead of an app"],
    ["--name NAME", "with --layer: the namespace"],
    ["--tenants T,…", "catalog-gray: the tenants whose apps pin the version (none: every tenant, a promote)"],
    ["--rollback", "catalog-gray: those apps pin again the version they had before"],
  ],
  options: {
    app: { type: "string" },
    file: { type: "string", multiple: true },
    format: { type: "string" },
    message: { type: "string", short: "m" },
    gray: { type: "string" },
    "gray-instances": { type: "string" },
    "gray-labels": { type: "string" },
    platform: { type: "string" },
    middleware: { type: "string" },
    version: { type: "string" },
    layer: { type: "string" },
    name: { type: "string" },
    tenants: { type: "string" },
    rollback: { type: "boolean" },
  },
  async run(ctx, values, positionals) {
    const [action = "list", ...args] = positionals;
    if (action === "catalog") return catalog(ctx, args);
    if (action === "catalog-gray") return catalogGray(ctx, values, args);
    const target = await targetOf(ctx, values, action);
    switch (action) {
      case "list":
      case "get":
        return show(ctx, target, values, action === "get" ? args : undefined);
      case "set":
      case "unset":
      case "use":
        return change(ctx, target, values, action, args);
      case "history":
        noArgs(args);
        return history(ctx, target);
      case "diff":
        return diff(ctx, target, args);
      case "rollback":
        return rollback(ctx, target, values, args);
      case "status":
        noArgs(args);
        return status(ctx, target);
      case "promote":
      case "abort":
        noArgs(args);
        return gray(ctx, target, action);
      default:
        throw new UsageError(`unknown config action: ${action}`, "config");
    }
  },
};

/** `config catalog-gray LAYER NAME@V`: the tenants' apps that use NAME pin V (or, --rollback, what they had). */
async function catalogGray(ctx: CliContext, values: FlagValues, args: string[]): Promise<number> {
  const [layer, ref, ...rest] = args;
  if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`, "config");
  if (layer !== "platform" && layer !== "middleware")
    throw new UsageError("config catalog-gray needs a layer: platform or middleware", "config");
  const m = /^([^@]+)@(\d+)$/.exec(ref ?? "");
  if (!m) throw new UsageError("config catalog-gray needs NAME@VERSION", "config");
  const tenants = stringFlag(values, "tenants")
    ?.split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  const client = await ctx.client();
  const back = values.rollback === true;
  const reply = await client.post<{
    moved: { tenant: string; app: string; from: number; to: number; appVersion: number }[];
    skipped: { tenant: string; app: string; reason: string }[];
  }>(`/config/catalog/${layer}/${encodeURIComponent(m[1] as string)}/gray${back ? "/rollback" : ""}`, {
    version: Number(m[2]),
    ...(tenants && tenants.length > 0 ? { tenants } : {}),
  });
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  const lines = reply.moved.map(
    (x) => `${x.tenant}/${x.app}: ${layer} ${m[1]}@${x.from} → @${x.to} (config v${x.appVersion})`,
  );
  for (const x of reply.skipped) lines.push(`${x.tenant}/${x.app}: skipped, ${x.reason}`);
  println(
    ctx.stdout,
    lines.length > 0 ? lines.join("\n") : `No app ${back ? "pins" : "uses another version of"} ${m[1]}.`,
  );
  return 0;
}

function noArgs(args: string[]): void {
  if (args.length > 0) throw new UsageError(`unexpected argument: ${args[0]}`, "config");
}

function versionArg(text: string | undefined, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`${what} must be a version number, not ${text}`, "config");
  return n;
}

async function show(
  ctx: CliContext,
  target: Target,
  values: FlagValues,
  get: string[] | undefined,
): Promise<number> {
  const client = await ctx.client();
  const versionFlag = stringFlag(values, "version");
  const version = versionFlag === undefined ? undefined : versionArg(versionFlag, "--version");
  let config: EffectiveConfig | null;
  let head: ConfigHead | undefined;
  if (target.kind === "app") {
    const reply = await client.get<{ head: ConfigHead; config: EffectiveConfig | null }>(target.base, {
      version,
    });
    config = reply.config;
    head = reply.head;
  } else {
    const versions = await client.get<{ items: ConfigVersionSummary[] }>(`${target.base}/versions`);
    const n = version ?? versions.items.at(-1)?.version;
    const v = n === undefined ? undefined : await client.get<ConfigVersion>(`${target.base}/versions/${n}`);
    config = v ? asEffective(v) : null;
  }
  if (get !== undefined) {
    if (get.length !== 1) throw new UsageError("config get needs one NAME", "config");
    const name = get[0] as string;
    const value = config?.values[name] ?? config?.files[name]?.content;
    if (value === undefined) {
      ctx.stderr.write(`herd: ${name} is not in the config of ${label(target)}.\n`);
      return 1;
    }
    if (ctx.flags.json) printJson(ctx.stdout, { name, value, origin: config?.origins[name] });
    else ctx.stdout.write(value.endsWith("\n") ? value : `${value}\n`);
    return 0;
  }
  if (ctx.flags.json) {
    printJson(ctx.stdout, { ...(head ? { head } : {}), config });
    return 0;
  }
  if (!config || Object.keys(config.origins).length === 0) {
    println(ctx.stdout, `${label(target)} has no config yet. Set some with \`herd config set KEY=VALUE\`.`);
    return 0;
  }
  const rows: string[][] = [];
  for (const [name, value] of Object.entries(config.values))
    rows.push([name, oneLine(value), config.origins[name] ?? ""]);
  for (const [name, f] of Object.entries(config.files))
    rows.push([
      name,
      `<${f.format} file, ${Buffer.byteLength(f.content)} bytes>`,
      config.origins[name] ?? "",
    ]);
  rows.sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1));
  const grayNote = head?.gray ? ` (v${head.gray.version} in gray release)` : "";
  println(ctx.stdout, `${label(target)} config v${config.version}${grayNote}`);
  println(ctx.stdout, renderTable(["NAME", "VALUE", "FROM"], rows));
  return 0;
}

function asEffective(v: ConfigVersion): EffectiveConfig {
  const values: EffectiveConfig["values"] = {};
  const files: EffectiveConfig["files"] = {};
  const origins: EffectiveConfig["origins"] = {};
  for (const [name, e] of Object.entries(v.entries)) {
    if (e.kind === "key") values[name] = e.value;
    else files[name] = { format: e.format, content: e.content };
    origins[name] = `${v.layer} ${v.namespace}@${v.version}`;
  }
  return { tenant: "", app: "", version: v.version, values, files, origins };
}

const label = (t: Target) => (t.kind === "app" ? t.app : t.label);
const oneLine = (s: string) =>
  s.length > 60 || s.includes("\n") ? `${s.replace(/\n/g, "⏎").slice(0, 57)}…` : s;

async function change(
  ctx: CliContext,
  target: Target,
  values: FlagValues,
  action: "set" | "unset" | "use",
  args: string[],
): Promise<number> {
  const body: Record<string, unknown> = {};
  const message = stringFlag(values, "message");
  if (message !== undefined) body.message = message;
  if (action === "set") {
    const set: Record<string, string> = {};
    for (const arg of args) {
      const eq = arg.indexOf("=");
      if (eq <= 0) throw new UsageError(`set takes KEY=VALUE, not ${arg}`, "config");
      set[arg.slice(0, eq)] = arg.slice(eq + 1);
    }
    const files: Record<string, { format: string; content: string }> = {};
    const fileFlags = values.file;
    for (const spec of Array.isArray(fileFlags) ? (fileFlags as string[]) : []) {
      const eq = spec.indexOf("=");
      if (eq <= 0) throw new UsageError(`--file takes NAME=PATH, not ${spec}`, "config");
      const name = spec.slice(0, eq);
      const path = spec.slice(eq + 1);
      let content: string;
      try {
        content = await readFile(path, "utf8");
      } catch (err) {
        throw new Error(
          `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        );
      }
      files[name] = { format: stringFlag(values, "format") ?? formatOfName(name), content };
    }
    if (Object.keys(set).length === 0 && Object.keys(files).length === 0)
      throw new UsageError("config set needs KEY=VALUE or --file NAME=PATH", "config");
    if (Object.keys(set).length > 0) body.set = set;
    if (Object.keys(files).length > 0) body.files = files;
    const grayTarget = grayOf(values);
    if (grayTarget) {
      if (target.kind !== "app") throw new UsageError("gray release is for an app's config", "config");
      body.gray = grayTarget;
    }
  } else if (action === "unset") {
    if (args.length === 0) throw new UsageError("config unset needs the names to remove", "config");
    body.unset = args;
  } else {
    noArgs(args);
    if (target.kind !== "app") throw new UsageError("use is for an app's config", "config");
    const platform = stringFlag(values, "platform");
    const middleware = stringFlag(values, "middleware");
    if (platform === undefined && middleware === undefined)
      throw new UsageError("config use needs --platform NAME@V|none or --middleware NAME@V,…", "config");
    if (platform !== undefined) body.platform = platform === "none" ? null : platform;
    if (middleware !== undefined) body.middleware = middleware === "" ? [] : middleware.split(",");
  }
  const client = await ctx.client();
  const reply = await client.post<{ version: ConfigVersionSummary; head?: ConfigHead }>(
    `${target.base}/versions`,
    body,
  );
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else if (reply.head?.gray)
    println(
      ctx.stdout,
      `${label(target)} config v${reply.version.version} is in gray release (${grayText(reply.head.gray)}); the others keep v${reply.head.stable}. Watch \`herd config status\`, then \`herd config promote\` or \`herd config abort\`.`,
    );
  else {
    println(ctx.stdout, `${label(target)} config is now v${reply.version.version}.`);
    // Heroku restarts on a config change; herd's running instances read the file or feed now, and
    // get the keys as env only when they start again.
    if (target.kind === "app" && (body.set !== undefined || body.unset !== undefined))
      println(
        ctx.stdout,
        `Running instances read it now ($HERD_CONFIG_FILE, the config feed); as env at their next start: herd restart --app ${target.app}`,
      );
  }
  return 0;
}

function grayOf(values: FlagValues): Record<string, unknown> | undefined {
  const share = stringFlag(values, "gray");
  const instances = stringFlag(values, "gray-instances");
  const labels = stringFlag(values, "gray-labels");
  if (share === undefined && instances === undefined && labels === undefined) return undefined;
  const out: Record<string, unknown> = {};
  if (share !== undefined) {
    const n = Number(share.replace(/%$/, ""));
    if (!Number.isInteger(n) || n < 1 || n > 100)
      throw new UsageError(`--gray is a percent from 1 to 100, not ${share}`, "config");
    out.share = n;
  }
  if (instances !== undefined) out.instances = instances.split(",").filter(Boolean);
  if (labels !== undefined) {
    const pairs = labels.split(",").filter(Boolean);
    const map: Record<string, string> = {};
    for (const p of pairs) {
      const eq = p.indexOf("=");
      if (eq <= 0) throw new UsageError(`--gray-labels takes K=V,…, not ${p}`, "config");
      map[p.slice(0, eq)] = p.slice(eq + 1);
    }
    out.labels = map;
  }
  return out;
}

function grayText(g: NonNullable<ConfigHead["gray"]>): string {
  const parts = [
    ...(g.share !== undefined ? [`${g.share}% of instances`] : []),
    ...(g.instances?.length ? [`instances ${g.instances.join(", ")}`] : []),
    ...(g.labels && Object.keys(g.labels).length
      ? [
          `labels ${Object.entries(g.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(",")}`,
        ]
      : []),
  ];
  return parts.join(" + ");
}

async function history(ctx: CliContext, target: Target): Promise<number> {
  const client = await ctx.client();
  const reply = await client.get<{ items: ConfigVersionSummary[]; head?: ConfigHead }>(
    `${target.base}/versions`,
  );
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  if (reply.items.length === 0) {
    println(ctx.stdout, `${label(target)} has no config versions yet.`);
    return 0;
  }
  const now = ctx.now();
  const rows = [...reply.items].reverse().map((v) => {
    const mark =
      reply.head?.stable === v.version ? "*" : reply.head?.gray?.version === v.version ? "gray" : "";
    // A rollback without a message of its own already says "rollback to vN" (the center's default).
    const rollback = v.rollbackOf === undefined ? "" : `rollback to v${v.rollbackOf}`;
    const what = rollback === "" || v.message === rollback ? v.message : `${v.message} (${rollback})`.trim();
    return [`v${v.version}`, mark, v.author, formatAge(v.createdAt, now), String(v.entries), what];
  });
  println(ctx.stdout, renderTable(["VERSION", "", "AUTHOR", "AGE", "ENTRIES", "MESSAGE"], rows));
  return 0;
}

interface Change {
  name: string;
  change: "added" | "removed" | "changed";
  before?: { kind: string; value?: string; content?: string };
  after?: { kind: string; value?: string; content?: string };
}

async function diff(ctx: CliContext, target: Target, args: string[]): Promise<number> {
  if (args.length > 2) throw new UsageError(`unexpected argument: ${args[2]}`, "config");
  const from = args[0] === undefined ? undefined : versionArg(args[0], "FROM");
  const to = args[1] === undefined ? undefined : versionArg(args[1], "TO");
  const client = await ctx.client();
  const reply = await client.get<{ from: number; to: number; changes: Change[] }>(`${target.base}/diff`, {
    from,
    to,
  });
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  println(ctx.stdout, `${label(target)} config v${reply.from} → v${reply.to}`);
  if (reply.changes.length === 0) println(ctx.stdout, "  no change");
  const text = (e: Change["before"]) => (e?.kind === "file" ? (e.content ?? "") : (e?.value ?? ""));
  for (const c of reply.changes) {
    if (c.change === "added") println(ctx.stdout, `+ ${c.name} = ${oneLine(text(c.after))}`);
    else if (c.change === "removed") println(ctx.stdout, `- ${c.name} = ${oneLine(text(c.before))}`);
    else if (c.after?.kind === "file" || c.before?.kind === "file") {
      println(ctx.stdout, `~ ${c.name} (file)`);
      for (const line of lineDiff(text(c.before), text(c.after))) println(ctx.stdout, `    ${line}`);
    } else println(ctx.stdout, `~ ${c.name}: ${oneLine(text(c.before))} → ${oneLine(text(c.after))}`);
  }
  return 0;
}

/** Lines only in a (-) and only in b (+), in order: enough to read a config file's change. */
function lineDiff(a: string, b: string): string[] {
  const before = a.split("\n");
  const after = b.split("\n");
  const inB = new Set(after);
  const inA = new Set(before);
  return [
    ...before.filter((l) => !inB.has(l)).map((l) => `- ${l}`),
    ...after.filter((l) => !inA.has(l)).map((l) => `+ ${l}`),
  ];
}

async function rollback(
  ctx: CliContext,
  target: Target,
  values: FlagValues,
  args: string[],
): Promise<number> {
  if (args.length !== 1)
    throw new UsageError("config rollback needs the VERSION whose content to restore", "config");
  const version = versionArg(args[0], "VERSION");
  const message = stringFlag(values, "message");
  const client = await ctx.client();
  const reply = await client.post<{ version: ConfigVersionSummary }>(`${target.base}/rollback`, {
    version,
    ...(message !== undefined ? { message } : {}),
  });
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else
    println(
      ctx.stdout,
      `${label(target)} config is now v${reply.version.version}, with the content of v${version}.`,
    );
  return 0;
}

async function status(ctx: CliContext, target: Target): Promise<number> {
  const client = await ctx.client();
  const reply = await client.get<{ head: ConfigHead; instances: InstanceStatusRow[] }>(
    `${target.base}/status`,
  );
  if (ctx.flags.json) {
    printJson(ctx.stdout, reply);
    return 0;
  }
  const { head } = reply;
  println(
    ctx.stdout,
    `${label(target)} config: stable v${head.stable}${head.gray ? `, v${head.gray.version} in gray release (${grayText(head.gray)})` : ""}`,
  );
  if (reply.instances.length === 0) {
    println(ctx.stdout, "No running instances.");
    return 0;
  }
  const rows = reply.instances.map((i) => [
    i.id,
    i.service,
    i.node ?? "-",
    `v${i.target}${i.gray ? " (gray)" : ""}`,
    i.applied === undefined ? "-" : `v${i.applied}`,
    i.behind ? "behind" : "ok",
  ]);
  println(ctx.stdout, renderTable(["INSTANCE", "SERVICE", "NODE", "SHOULD HAVE", "APPLIED", ""], rows));
  const behind = reply.instances.filter((i) => i.behind).length;
  if (behind > 0) println(ctx.stdout, `${behind} of ${reply.instances.length} behind.`);
  return 0;
}

async function gray(ctx: CliContext, target: Target, action: "promote" | "abort"): Promise<number> {
  const client = await ctx.client();
  const reply = await client.post<{ head: ConfigHead; aborted?: number }>(`${target.base}/${action}`, {});
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else if (action === "promote")
    println(ctx.stdout, `${label(target)} config v${reply.head.stable} goes to every instance.`);
  else
    println(
      ctx.stdout,
      `Gray config v${reply.aborted} rolled back: every instance of ${label(target)} gets v${reply.head.stable}.`,
    );
  return 0;
}

async function catalog(ctx: CliContext, args: string[]): Promise<number> {
  noArgs(args);
  const client = await ctx.client();
  const reply = await client.get<{ items: CatalogNamespace[] }>("/config/catalog");
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else if (reply.items.length === 0)
    println(
      ctx.stdout,
      "The catalog is empty. A platform admin adds to it with `herd config set K=V --layer platform --name NAME`.",
    );
  else
    println(
      ctx.stdout,
      renderTable(
        ["LAYER", "NAME", "VERSIONS"],
        reply.items.map((n) => [n.layer, n.name, n.versions.map((v) => `v${v}`).join(" ")]),
      ),
    );
  return 0;
}
