/**
 * Prints, as markdown, what each role and machine identity may do — asked of
 * the API's own decide() for every permission in ROUTES — and which routes
 * need which permission. docs/teams.md holds its output between two markers;
 * `--write FILE` replaces that part of FILE.
 *
 *   node scripts/permissions-table.ts                      # print
 *   node scripts/permissions-table.ts --write docs/teams.md  # update the doc
 */

import { readFileSync, writeFileSync } from "node:fs";
import { decide, type Permission, type Principal, ROUTES } from "../src/api/permissions.ts";
import type { Role, Token, TokenKind } from "../src/model/identity.ts";

const START = "<!-- permissions-table:start (node scripts/permissions-table.ts --write docs/teams.md) -->";
const END = "<!-- permissions-table:end -->";

/** What each permission covers: the comments beside it in permissions.ts. */
function descriptions(): Map<string, string> {
  const source = readFileSync(new URL("../src/api/permissions.ts", import.meta.url), "utf8");
  const found = new Map<string, string>();
  for (const m of source.matchAll(/\| "([a-z:]+)"[;,]? \/\/ (.+)/g)) found.set(m[1], m[2].trim());
  return found;
}

function principal(kind: TokenKind, extra: Partial<Token> = {}, roles: [string, Role][] = []): Principal {
  const token: Token = { id: "00000000", name: "table", kind, createdAt: "", ...extra };
  return { token, label: kind, admin: false, roles: new Map(roles) };
}

/** The identities, each as a column: a principal, and the tenant and node it names when allowed. */
const WHO: { title: string; who: Principal }[] = [
  { title: "viewer", who: principal("user", { user: "v" }, [["t", "viewer"]]) },
  { title: "deployer", who: principal("user", { user: "d" }, [["t", "deployer"]]) },
  { title: "owner", who: principal("user", { user: "o" }, [["t", "owner"]]) },
  { title: "platform admin", who: { ...principal("user", { user: "admin" }), admin: true } },
  { title: "agent", who: principal("agent", { node: "n1" }) },
  { title: "gateway", who: principal("gateway") },
  { title: "ingest", who: principal("ingest", { tenant: "t" }) },
  { title: "join", who: principal("join") },
];

const allowed = (who: Principal, permission: Permission, tenant: string, node: string): boolean => {
  try {
    decide(who, permission, { tenant, node });
    return true;
  } catch {
    return false;
  }
};

/** A cell: yes, no, or yes only for the identity's own node or tenant. */
function cell(who: Principal, permission: Permission): string {
  if (!allowed(who, permission, "t", "n1")) return "–";
  if (who.token.kind === "user" || allowed(who, permission, "other", "n2")) return "yes";
  return who.token.kind === "agent" ? "its node" : "its tenant";
}

/** The markdown: permissions × identities, then every route with its permission. */
export function permissionsTable(): string {
  const about = descriptions();
  const byPermission = new Map<Permission, string[]>();
  const open: string[] = [];
  for (const [route, permission] of Object.entries(ROUTES)) {
    if (permission === null) open.push(route);
    else byPermission.set(permission, [...(byPermission.get(permission) ?? []), route]);
  }
  // In the order permissions.ts declares them (tenant ones first), then any it does not describe.
  const order = [...about.keys(), ...byPermission.keys()].filter(
    (p, i, all): p is Permission => byPermission.has(p as Permission) && all.indexOf(p) === i,
  );
  const header = ["permission", "what it allows", ...WHO.map((w) => w.title)];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...order.map(
      (p) => `| \`${p}\` | ${about.get(p) ?? ""} | ${WHO.map((w) => cell(w.who, p)).join(" | ")} |`,
    ),
    "",
    `Without any token: ${open.map((r) => `\`${r}\``).join(", ")}.`,
    "",
    "<details><summary>Every route and the permission it needs</summary>",
    "",
    "| route | permission |",
    "| --- | --- |",
    ...order.flatMap((p) => (byPermission.get(p) ?? []).map((r) => `| \`${r}\` | \`${p}\` |`)),
    "",
    "</details>",
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const table = permissionsTable();
  const at = process.argv.indexOf("--write");
  if (at < 0) {
    process.stdout.write(`${table}\n`);
  } else {
    const file = process.argv[at + 1];
    if (!file) throw new Error("--write needs a file");
    const text = readFileSync(file, "utf8");
    const start = text.indexOf(START);
    const end = text.indexOf(END);
    if (start < 0 || end < start) throw new Error(`${file} has no ${START} … ${END} markers`);
    writeFileSync(file, `${text.slice(0, start + START.length)}\n\n${table}\n\n${text.slice(end)}`);
    process.stdout.write(`updated ${file}\n`);
  }
}
