/**
 * `herd catalog`: the asset catalog. Without --app, one line per app; with
 * --app, its releases (slug, packages, who deployed, where each runs), owners,
 * the config versions in effect, the packages of one release, the declared
 * dependencies beside the calls seen in the traces; `herd catalog
 * search NAME[@VERSION]` says which apps ship a package.
 *
 *   herd catalog                                       ─► GET /catalog/apps
 *   herd catalog --app A [--release N] [--against M]   ─► GET /catalog/apps/A + .../releases/N/packages?against=M
 *   herd catalog search X[@Y] [--all]                  ─► GET /catalog/packages?name=X&version=Y
 */

import type {
  CatalogApp,
  CatalogAppSummary,
  CatalogConfig,
  CatalogConfigVersion,
  CatalogRelease,
  PackageSearch,
  ReleasePackages,
} from "../model/catalog.ts";
import { formatMicros } from "../observe/traces/span.ts";
import { parseCount, UsageError } from "./args.ts";
import { type CommandSpec, printJson, println, stringFlag } from "./context.ts";
import { formatAge, renderTable } from "./format.ts";

/** `herd catalog [--app A [--release N] [--window D]]`, `herd catalog search NAME[@VERSION] [--all]`. */
export const catalogCommand: CommandSpec = {
  name: "catalog",
  usage:
    "herd catalog [--app A [--release N] [--against M] [--window 15m]]\nherd catalog search NAME[@VERSION|@RANGE] [--all]",
  summary:
    "The asset catalog: what apps ship and where it runs. Without --app: each app with its\n" +
    "serving release, slug, package count, instances, nodes and owners. With --app: its releases\n" +
    "(slug, packages, who deployed, where each runs), the packages of the serving release (or\n" +
    "--release N) and the calls seen in the traces. `search` says which apps ship a package, at a\n" +
    "version or semver range (lodash@^4.17); releases in service only, unless --all. A platform\n" +
    "admin sees every tenant (or --tenant's).",
  flags: [
    ["--app A", "one app's entry"],
    ["--release N", "with --app: the packages of release N (default: the serving one)"],
    ["--against M", "with --app: the package versions added and removed since release M"],
    ["--window D", "with --app: how far back the traces are read for calls (default 15m)"],
    ["--all", "with search: every release kept, not only those in service"],
  ],
  options: {
    app: { type: "string" },
    release: { type: "string" },
    against: { type: "string" },
    window: { type: "string" },
    all: { type: "boolean" },
  },
  async run(ctx, values, positionals) {
    const client = await ctx.client();
    if (positionals[0] === "search") {
      if (positionals.length !== 2)
        throw new UsageError("search takes one package: herd catalog search NAME[@VERSION]", "catalog");
      for (const flag of ["app", "release", "against", "window"])
        if (values[flag] !== undefined) throw new UsageError(`--${flag} is not for search`, "catalog");
      const { name, version } = parsePackageArg(positionals[1]);
      const found = await client.get<PackageSearch>("/catalog/packages", {
        name,
        version,
        all: values.all === true ? true : undefined,
      });
      if (ctx.flags.json) printJson(ctx.stdout, found);
      else println(ctx.stdout, searchText(found));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "catalog");
    if (values.all !== undefined) throw new UsageError("--all is for `herd catalog search`", "catalog");
    const app = stringFlag(values, "app");
    if (app === undefined) {
      for (const flag of ["release", "against", "window"])
        if (values[flag] !== undefined) throw new UsageError(`--${flag} needs --app`, "catalog");
      const { items } = await client.get<{ items: CatalogAppSummary[] }>("/catalog/apps");
      if (ctx.flags.json) printJson(ctx.stdout, { items });
      else println(ctx.stdout, appsText(items));
      return 0;
    }
    const releaseFlag = (name: string) => {
      const v = stringFlag(values, name);
      return v === undefined ? undefined : parseCount(v.replace(/^v/, ""), name, "catalog", 1);
    };
    const asked = releaseFlag("release");
    const against = releaseFlag("against");
    const entry = await client.get<CatalogApp>(`/catalog/apps/${encodeURIComponent(app)}`, {
      window: stringFlag(values, "window"),
    });
    const version = asked ?? entry.release ?? entry.releases[0]?.version;
    const packages =
      version === undefined
        ? undefined
        : await client.get<ReleasePackages>(
            `/catalog/apps/${encodeURIComponent(app)}/releases/${version}/packages`,
            { against },
          );
    if (ctx.flags.json) printJson(ctx.stdout, { ...entry, releasePackages: packages ?? null });
    else println(ctx.stdout, appText(entry, packages, ctx.now()));
    return 0;
  },
};

/** `lodash`, `lodash@4.17.21`, `lodash@^4`, `@scope/pkg@1.x`: the name, and the version or range after the last @. */
export function parsePackageArg(arg: string): { name: string; version?: string } {
  const at = arg.lastIndexOf("@");
  if (at <= 0) return { name: arg };
  const version = arg.slice(at + 1);
  if (version === "")
    throw new UsageError(`${arg}: nothing after @ (give a version or range, or leave @ out)`, "catalog");
  return { name: arg.slice(0, at), version };
}

/** Every app: TENANT, APP, RELEASE, SLUG, PACKAGES, INSTANCES (running/wanted), NODES, OWNERS. */
export function appsText(items: readonly CatalogAppSummary[]): string {
  if (items.length === 0) return "No apps.";
  return renderTable(
    ["tenant", "app", "release", "slug", "packages", "instances", "nodes", "owners"],
    items.map((s) => [
      s.tenant,
      s.app,
      s.release === null ? "-" : `v${s.release}`,
      s.slug ? s.slug.slice(0, 12) : "-",
      s.release === null ? "-" : s.packages === null ? "unknown" : String(s.packages),
      `${s.running}/${s.instances}`,
      s.nodes.join(",") || "-",
      s.owners.join(",") || "-",
    ]),
  );
}

/** One app: a header, its config, its releases, the packages of one release, its dependencies, the observed calls. */
export function appText(entry: CatalogApp, packages: ReleasePackages | undefined, now: number): string {
  const head = [
    `app ${entry.app} (tenant ${entry.tenant}), serving ${entry.release === null ? "nothing yet" : `v${entry.release}`}`,
    `owners: ${entry.owners.join(", ") || "-"}`,
    `deployed by: ${entry.deployers.join(", ") || "unknown (the audit trail does not tell)"}`,
    ...configLines(entry.config, now),
  ].join("\n");
  const releases =
    entry.releases.length === 0
      ? "No releases."
      : renderTable(
          ["release", "created", "slug", "packages", "changes", "deployed by", "runs", "description"],
          entry.releases.map((r) => [
            `v${r.version}${r.current ? " *" : ""}`,
            formatAge(r.createdAt, now),
            r.slug.slice(0, 12),
            r.packages === null ? "unknown" : String(r.packages.count),
            r.changes ? `+${r.changes.added} -${r.changes.removed}` : "-",
            r.deployedBy ?? "-",
            runsText(r),
            r.description,
          ]),
        );
  const parts = [head, releases];
  if (packages) parts.push(packagesText(packages));
  parts.push(dependenciesText(entry));
  parts.push(callsText(entry));
  return parts.join("\n\n");
}

/** `config: v3 (platform base@4, middleware redis@1), by user alice 2h ago` and the gray release's line. */
function configLines(config: CatalogConfig, now: number): string[] {
  const pins = (v: CatalogConfigVersion) => {
    const list = [
      ...(v.platform ? [`platform ${v.platform.name}@${v.platform.version}`] : []),
      ...(v.middleware.length > 0
        ? [`middleware ${v.middleware.map((m) => `${m.name}@${m.version}`).join(", ")}`]
        : []),
    ];
    return list.length > 0 ? ` (${list.join("; ")})` : "";
  };
  const { stable, gray } = config;
  const lines = [
    stable
      ? `config: v${stable.version}${pins(stable)}, by ${stable.author} ${formatAge(stable.createdAt, now)}`
      : "config: no version yet",
  ];
  if (gray) {
    const to = [
      ...(gray.share !== undefined ? [`${gray.share}% of instances`] : []),
      ...(gray.instances?.length ? [`instances ${gray.instances.join(", ")}`] : []),
      ...(gray.labels
        ? [
            `labels ${Object.entries(gray.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(",")}`,
          ]
        : []),
    ];
    lines.push(
      `config gray: v${gray.version}${pins(gray)} to ${to.join(", ") || "no instance"}, by ${gray.by} ${formatAge(gray.startedAt, now)}`,
    );
  }
  return lines;
}

/** Each declared dependency and each undeclared call, with whether the traces saw it. */
function dependenciesText(entry: CatalogApp): string {
  const { declared, observed, drift } = entry.dependencies;
  if (!declared) return "Declared dependencies: none (no release serves)";
  const title = `Dependencies (dependsOn of v${declared.release}${observed ? `; seen in the traces over ${observed.window}` : ""})`;
  const seen = new Set((observed?.calls ?? []).map((c) => `${c.from}\0${c.to}`));
  const rows: string[][] = [];
  for (const [service, deps] of Object.entries(declared.services))
    for (const to of deps) {
      const from = `${entry.app}/${service}`;
      const key = `${from}\0${to}`;
      rows.push([from, to, "yes", !observed ? "unknown" : seen.has(key) ? "yes" : "no (declared, not seen)"]);
    }
  for (const e of drift?.undeclared ?? []) rows.push([e.from, e.to, "no", "yes (undeclared)"]);
  if (rows.length === 0) return `${title}: none declared, no undeclared call seen`;
  return `${title}:\n${renderTable(["from", "to", "declared", "seen"], rows)}`;
}

/** Where a release runs: `web 2/2 n1, 1/1 n2; worker 0/1 pending`. */
function runsText(r: CatalogRelease): string {
  if (r.runs.length === 0) return "-";
  const by = new Map<string, string[]>();
  for (const p of r.runs)
    by.set(p.service, [...(by.get(p.service) ?? []), `${p.running}/${p.instances} ${p.node ?? "pending"}`]);
  return [...by].map(([service, where]) => `${service} ${where.join(", ")}`).join("; ");
}

function packagesText(p: ReleasePackages): string {
  const title = `Packages of v${p.release} (slug ${p.slug.slice(0, 12)})`;
  if (p.changes !== undefined) {
    const since = `Package changes of v${p.release}`;
    if (p.changes === null) return `${since}: unknown (the packages of one of the two releases are unknown)`;
    const rows = [
      ...p.changes.removed.map((x) => ["-", x.name, x.version]),
      ...p.changes.added.map((x) => ["+", x.name, x.version]),
    ];
    if (rows.length === 0) return `${since} since v${p.changes.against}: none`;
    return `${since} since v${p.changes.against}:\n${renderTable(["", "name", "version"], rows)}`;
  }
  if (p.packages === null) return `${title}: unknown (built before herd recorded packages)`;
  if (p.packages.packages.length === 0)
    return `${title}: none${p.packages.from === null ? " (nothing was installed)" : ""}`;
  const from = `from ${p.packages.from}${p.packages.lockfile ? `, lockfile ${p.packages.lockfile}` : ", no lockfile in the source"}`;
  return `${title}, ${from}:\n${renderTable(
    ["name", "version"],
    p.packages.packages.map((x) => [x.name, x.version]),
  )}`;
}

function callsText(entry: CatalogApp): string {
  const { observed, observedError } = entry.dependencies;
  if (!observed) return `Calls seen in the traces: unavailable (${observedError ?? "no answer"})`;
  if (observed.calls.length === 0) return `Calls seen in the traces (${observed.window}): none`;
  return `Calls seen in the traces (${observed.window}):\n${renderTable(
    ["from", "to", "calls", "rate/s", "errors %", "p99"],
    observed.calls.map((c) => [
      c.from,
      c.to,
      String(c.calls),
      String(c.rate),
      `${Number((c.errorRate * 100).toFixed(1))}%`,
      formatMicros(c.p99),
    ]),
  )}`;
}

/** Search results: TENANT, APP, RELEASE, VERSION, INSTANCES, NODES; then the releases whose packages are unknown. */
export function searchText(found: PackageSearch): string {
  const what = `${found.name}${found.version ? `@${found.version}` : ""}`;
  const scope = found.all ? "any release kept" : "releases in service";
  const lines: string[] = [];
  if (found.items.length === 0) lines.push(`No app ships ${what} (${scope}).`);
  else
    lines.push(
      renderTable(
        ["tenant", "app", "release", "version", "instances", "nodes"],
        found.items.map((m) => [
          m.tenant,
          m.app,
          `v${m.release}${m.current ? " *" : ""}`,
          m.package.version,
          `${m.running}/${m.instances}`,
          m.nodes.join(",") || "-",
        ]),
      ),
    );
  if (found.unknown.length > 0) {
    const list = found.unknown.map((u) => `${u.tenant}/${u.app} v${u.release}`).join(", ");
    lines.push(`Packages unknown (built before herd recorded them; deploy again to record): ${list}`);
  }
  return lines.join("\n\n");
}
