/**
 * `herd alerts …`: active alerts, rules, silences and webhook receivers.
 *
 *   herd alerts                         GET /alerts            ─► STATE | SEVERITY | ALERT | LABELS | VALUE | SINCE
 *   herd alerts rules [set|delete]      GET|PUT|DELETE /alerts/rules[/:name]
 *   herd alerts silence MATCHER… --for  POST /alerts/silences
 *   herd alerts receivers [set|delete]  GET|PUT|DELETE /alerts/receivers[/:name]
 */

import { readFile } from "node:fs/promises";
import { parseDuration } from "../observe/promql/parser.ts";
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
import type { Items } from "./types.ts";

interface AlertView {
  rule: string;
  state: string;
  severity: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  value: number;
  since: string;
  silencedBy: string | null;
}
interface RuleView {
  name: string;
  source: string;
  expr: string;
  op?: string;
  threshold?: number;
  for?: string;
  severity?: string;
  disabled?: boolean;
  replaced?: boolean;
  app?: string;
  active?: number;
  health?: { lastError: string | null } | null;
}
interface ReceiverView {
  name: string;
  url: string;
  severities?: string[];
  delivery: {
    delivered: number;
    failedAttempts: number;
    dropped: number;
    queued: number;
    lastError: string | null;
  };
}
interface SilenceView {
  id: string;
  matchers: { name: string; op: string; value: string }[];
  until: string;
  comment: string;
  state: string;
}

const USAGE = [
  "herd alerts",
  "herd alerts rules",
  "herd alerts rules set NAME --expr QUERY [--op OP --threshold N] [--for 5m] [--severity warning] [--summary TEXT] [--label K=V]… [--disable]",
  "herd alerts rules delete NAME",
  "herd alerts silence MATCHER… --for 1h [--comment TEXT]",
  "herd alerts silences",
  "herd alerts unsilence ID",
  "herd alerts receivers",
  "herd alerts receivers set NAME --url URL [--severity S]… [--header 'Name: value']… [--header-file 'Name: FILE']…",
  "herd alerts receivers delete NAME",
].join("\n");

const enc = encodeURIComponent;
/** Labels other than alertname and severity (shown in their own columns). */
const otherLabels = (l: Record<string, string>) =>
  Object.entries(l)
    .filter(([k]) => k !== "alertname" && k !== "severity")
    .map(([k, v]) => `${k}=${v}`)
    .join(",") || "-";
const num = (v: number) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4))));
/** Long expressions cut to keep the table readable (--json has them whole). */
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const json = (ctx: CliContext, reply: unknown): number => {
  printJson(ctx.stdout, reply);
  return 0;
};
const list = (values: FlagValues, name: string): string[] => {
  const v = values[name];
  return Array.isArray(v) ? v.map(String) : typeof v === "string" ? [v] : [];
};

export const alertsCommand: CommandSpec = {
  name: "alerts",
  usage: USAGE,
  summary:
    "Active alerts, alert rules, silences and webhook receivers.\n" +
    'Matchers: alertname=route-error-rate, app=~"shop|cart", severity!=info. Firing and resolved alerts are also events (herd events).',
  flags: [
    ["--expr QUERY", "rules set: the PromQL instant query"],
    ["--op OP --threshold N", "rules set: fire where `QUERY OP N` holds (>, >=, <, <=, ==, !=)"],
    ["--for DURATION", "rules set: how long it must hold (default 0s); silence: how long it lasts"],
    ["--severity S", "rules set: info, warning (default) or critical; receivers set: only these (repeat)"],
    ["--summary TEXT", "rules set: the summary annotation ({{ $labels.x }}, {{ $value }})"],
    ["--label K=V", "rules set: a label added to its alerts (repeat)"],
    ["--disable", "rules set: keep the rule but do not evaluate it (turns off a built-in rule)"],
    ["--comment TEXT", "silence: why"],
    ["--url URL", "receivers set: where to POST"],
    ["--header 'N: V'", "receivers set: an HTTP header to send (repeat)"],
    [
      "--header-file 'N: FILE'",
      "receivers set: a header whose value is a file's content, for secrets (repeat)",
    ],
  ],
  options: {
    expr: { type: "string" },
    op: { type: "string" },
    threshold: { type: "string" },
    for: { type: "string" },
    severity: { type: "string", multiple: true },
    summary: { type: "string" },
    label: { type: "string", multiple: true },
    disable: { type: "boolean" },
    comment: { type: "string" },
    url: { type: "string" },
    header: { type: "string", multiple: true },
    "header-file": { type: "string", multiple: true },
  },
  async run(ctx, values, positionals) {
    const [what, action, ...rest] = positionals;
    if (what === undefined) return showAlerts(ctx);
    if (what === "rules") return rules(ctx, values, action, rest);
    if (what === "receivers") return receivers(ctx, values, action, rest);
    if (what === "silence")
      return silence(
        ctx,
        values,
        [action, ...rest].filter((x) => x !== undefined),
      );
    if (what === "silences") return showSilences(ctx);
    if (what === "unsilence") {
      if (!action) throw new UsageError("unsilence needs the silence's id (herd alerts silences)", "alerts");
      const reply = await (await ctx.client()).delete<unknown>(`/alerts/silences/${enc(action)}`);
      if (ctx.flags.json) printJson(ctx.stdout, reply);
      else println(ctx.stdout, `Silence ${action} ended.`);
      return 0;
    }
    throw new UsageError(`unknown alerts action: ${what}`, "alerts");
  },
};

async function showAlerts(ctx: CliContext): Promise<number> {
  const reply = await (await ctx.client()).get<Items<AlertView>>("/alerts");
  if (ctx.flags.json) return json(ctx, reply);
  if (reply.items.length === 0) {
    println(ctx.stdout, "No active alerts.");
    return 0;
  }
  const rows = reply.items.map((a) => [
    a.silencedBy ? `${a.state} (silenced)` : a.state,
    a.severity,
    a.rule,
    otherLabels(a.labels),
    num(a.value),
    formatAge(a.since, ctx.now()),
    a.annotations.summary ?? "",
  ]);
  println(
    ctx.stdout,
    renderTable(["state", "severity", "alert", "labels", "value", "since", "summary"], rows),
  );
  return 0;
}

async function rules(ctx: CliContext, values: FlagValues, action: string | undefined, rest: string[]) {
  const client = await ctx.client();
  if (action === undefined) {
    const reply = await client.get<Items<RuleView>>("/alerts/rules");
    if (ctx.flags.json) return json(ctx, reply);
    const rows = reply.items.map((r) => [
      r.name,
      r.app ? `herd.yaml (${r.app})` : r.source,
      r.disabled ? "disabled" : r.replaced ? "replaced" : (r.severity ?? "warning"),
      r.for ?? "0s",
      clip(r.op ? `${r.expr} ${r.op} ${r.threshold}` : r.expr, 70),
      String(r.active ?? 0),
      r.health?.lastError ?? "",
    ]);
    println(ctx.stdout, renderTable(["name", "source", "severity", "for", "expr", "active", "error"], rows));
    return 0;
  }
  const [name, ...extra] = rest;
  if (!name) throw new UsageError(`alerts rules ${action} needs the rule's name`, "alerts");
  if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "alerts");
  if (action === "delete") {
    const reply = await client.delete<unknown>(`/alerts/rules/${enc(name)}`);
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else println(ctx.stdout, `Deleted rule ${name}.`);
    return 0;
  }
  if (action !== "set") throw new UsageError(`unknown alerts rules action: ${action}`, "alerts");
  const expr = stringFlag(values, "expr");
  if (!expr) throw new UsageError("alerts rules set needs --expr QUERY", "alerts");
  const threshold = stringFlag(values, "threshold");
  if (threshold !== undefined && Number.isNaN(Number(threshold)))
    throw new UsageError(`--threshold ${threshold}: give a number`, "alerts");
  const severities = list(values, "severity");
  if (severities.length > 1) throw new UsageError("a rule has one --severity", "alerts");
  const labels: Record<string, string> = {};
  for (const l of list(values, "label")) {
    const i = l.indexOf("=");
    if (i < 1) throw new UsageError(`--label ${l}: give K=V`, "alerts");
    labels[l.slice(0, i)] = l.slice(i + 1);
  }
  const summary = stringFlag(values, "summary");
  const body = {
    expr,
    ...(stringFlag(values, "op") ? { op: stringFlag(values, "op") } : {}),
    ...(threshold !== undefined ? { threshold: Number(threshold) } : {}),
    ...(stringFlag(values, "for") ? { for: stringFlag(values, "for") } : {}),
    ...(severities[0] ? { severity: severities[0] } : {}),
    ...(Object.keys(labels).length ? { labels } : {}),
    ...(summary ? { annotations: { summary } } : {}),
    ...(values.disable === true ? { disabled: true } : {}),
  };
  const reply = await client.put<RuleView & { revision: number }>(`/alerts/rules/${enc(name)}`, body);
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else
    println(ctx.stdout, `Rule ${name} set (revision ${reply.revision}); it counts from the next evaluation.`);
  return 0;
}

async function silence(ctx: CliContext, values: FlagValues, matchers: string[]): Promise<number> {
  if (matchers.length === 0)
    throw new UsageError('alerts silence needs matchers, e.g. alertname=node-lost node="n2"', "alerts");
  const forFlag = stringFlag(values, "for");
  if (!forFlag) throw new UsageError("alerts silence needs --for DURATION (e.g. 1h)", "alerts");
  const ms = parseDuration(forFlag);
  if (!ms) throw new UsageError(`--for ${forFlag}: give a duration such as 30m or 2h`, "alerts");
  const reply = await (await ctx.client()).post<SilenceView>("/alerts/silences", {
    matchers,
    until: new Date(ctx.now() + ms).toISOString(),
    ...(stringFlag(values, "comment") ? { comment: stringFlag(values, "comment") } : {}),
  });
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else
    println(
      ctx.stdout,
      `Silence ${reply.id} until ${reply.until}. End it early with \`herd alerts unsilence ${reply.id}\`.`,
    );
  return 0;
}

async function showSilences(ctx: CliContext): Promise<number> {
  const reply = await (await ctx.client()).get<Items<SilenceView>>("/alerts/silences");
  if (ctx.flags.json) return json(ctx, reply);
  const rows = reply.items.map((s) => [
    s.id,
    s.state,
    s.matchers.map((m) => `${m.name}${m.op}${JSON.stringify(m.value)}`).join(","),
    s.until,
    s.comment,
  ]);
  println(ctx.stdout, renderTable(["id", "state", "matchers", "until", "comment"], rows));
  return 0;
}

async function receivers(ctx: CliContext, values: FlagValues, action: string | undefined, rest: string[]) {
  const client = await ctx.client();
  if (action === undefined) {
    const reply = await client.get<Items<ReceiverView>>("/alerts/receivers");
    if (ctx.flags.json) return json(ctx, reply);
    const rows = reply.items.map((r) => [
      r.name,
      r.url,
      r.severities?.join(",") ?? "all",
      String(r.delivery.delivered),
      String(r.delivery.failedAttempts),
      String(r.delivery.dropped),
      String(r.delivery.queued),
      r.delivery.lastError ?? "",
    ]);
    println(
      ctx.stdout,
      renderTable(
        ["name", "url", "severities", "delivered", "failed", "dropped", "queued", "last error"],
        rows,
      ),
    );
    return 0;
  }
  const [name, ...extra] = rest;
  if (!name) throw new UsageError(`alerts receivers ${action} needs the receiver's name`, "alerts");
  if (extra.length > 0) throw new UsageError(`unexpected argument: ${extra[0]}`, "alerts");
  if (action === "delete") {
    const reply = await client.delete<unknown>(`/alerts/receivers/${enc(name)}`);
    if (ctx.flags.json) printJson(ctx.stdout, reply);
    else println(ctx.stdout, `Deleted receiver ${name}.`);
    return 0;
  }
  if (action !== "set") throw new UsageError(`unknown alerts receivers action: ${action}`, "alerts");
  const url = stringFlag(values, "url");
  if (!url) throw new UsageError("alerts receivers set needs --url URL", "alerts");
  const headers: Record<string, string> = {};
  for (const h of list(values, "header")) {
    const i = h.indexOf(":");
    if (i < 1) throw new UsageError(`--header ${h}: give 'Name: value'`, "alerts");
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  // A secret header's value from a file, so it is in no shell history or process list.
  for (const h of list(values, "header-file")) {
    const i = h.indexOf(":");
    if (i < 1) throw new UsageError(`--header-file ${h}: give 'Name: FILE'`, "alerts");
    const file = h.slice(i + 1).trim();
    try {
      headers[h.slice(0, i).trim()] = (await readFile(file, "utf8")).replace(/\r?\n$/, "");
    } catch (err) {
      throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
    }
  }
  const severities = list(values, "severity");
  const reply = await client.put<{ revision: number }>(`/alerts/receivers/${enc(name)}`, {
    url,
    ...(Object.keys(headers).length ? { headers } : {}),
    ...(severities.length ? { severities } : {}),
  });
  if (ctx.flags.json) printJson(ctx.stdout, reply);
  else println(ctx.stdout, `Receiver ${name} set: firing and resolved alerts are POSTed to ${url}.`);
  return 0;
}
