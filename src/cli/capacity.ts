/**
 * `herd capacity`: CPU and memory per node and per tenant — allocatable,
 * requested by the instances placed, free (what placement can still give)
 * and used (as the agents measure it) — from `GET /capacity`.
 */

import type { CapacityReport, Measured, NodeCapacity, TenantCapacity } from "../api/capacity.ts";
import type { Resources } from "../model/objects.ts";
import { UsageError } from "./args.ts";
import { type CommandSpec, printJson, println } from "./context.ts";
import { formatBytes, formatCores, formatMemory, renderTable } from "./format.ts";

/** `herd capacity [--tenant T]`. */
export const capacityCommand: CommandSpec = {
  name: "capacity",
  usage: "herd capacity [--tenant T]",
  summary:
    "CPU and memory per node and per tenant: ALLOC (what instances may be given; ×2: CPU requests may\n" +
    "add up to twice it, --cpu-overcommit), REQ (what the instances placed asked for), FREE (ALLOC\n" +
    "(× overcommit) - REQ: what a deploy or scale can still get) and USED\n" +
    "(what they use, as measured; MACHINE: the whole machine). A platform admin sees every tenant\n" +
    "(or the one --tenant names); a tenant's members see the nodes' totals and their own tenant.",
  options: {},
  async run(ctx, _values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`, "capacity");
    const client = await ctx.client();
    const report = await client.get<CapacityReport>("/capacity");
    if (ctx.flags.json) printJson(ctx.stdout, report);
    else println(ctx.stdout, capacityText(report));
    return 0;
  },
};

/** The report for people: the nodes' table (with a total), then the tenants'. */
export function capacityText(report: CapacityReport): string {
  if (report.nodes.length === 0) return "No nodes. Start an agent with `herd up` or `herd agent`.";
  const mine = report.tenant;
  const nodeRows = report.nodes.map((n) => [
    n.name,
    n.schedulable ? n.state : n.state === "ready" ? `${n.state},closed` : n.state,
    String(n.instances),
    ...figures(n),
    machineText(n.machine),
    ...(mine !== undefined && n.tenant ? [shareText(n.tenant.requested, n.tenant.used)] : []),
  ]);
  const t = report.total;
  nodeRows.push([
    "total (ready)",
    "",
    String(report.nodes.filter((n) => n.state === "ready").reduce((s, n) => s + n.instances, 0)),
    ...figures({ allocatable: t.allocatable, requested: t.requested, free: t.free, used: t.used }),
    "",
    ...(mine !== undefined ? [""] : []),
  ]);
  const nodes = renderTable(
    [
      "node",
      "state",
      "instances",
      "cpu alloc",
      "cpu req",
      "cpu free",
      "cpu used",
      "mem alloc",
      "mem req",
      "mem free",
      "mem used",
      "machine used",
      ...(mine !== undefined ? [`${mine} req / used`] : []),
    ],
    nodeRows,
  );
  const tenants = renderTable(
    ["tenant", "instances", "cpu req", "cpu used", "mem req", "mem used", "units", "nodes"],
    report.tenants.map((tc) => tenantRow(tc)),
  );
  return `${nodes}\n\n${tenants}`;
}

function figures(
  n: Pick<NodeCapacity, "allocatable" | "requested" | "free" | "used"> & { cpuOvercommit?: number },
): string[] {
  return [
    allocatableCpu(n.allocatable.cpu, n.cpuOvercommit),
    formatCores(n.requested.cpu),
    formatCores(n.free.cpu),
    formatCores(n.used.cpu),
    formatMemory(n.allocatable.memory),
    formatMemory(n.requested.memory),
    formatMemory(n.free.memory),
    formatMemory(n.used.memory),
  ];
}

/** Allocatable CPU, with the overcommit ratio when requests may exceed it: "1.9 ×2". */
export function allocatableCpu(cpu: number, overcommit: number | undefined): string {
  return overcommit === undefined || overcommit === 1
    ? formatCores(cpu)
    : `${formatCores(cpu)} ×${overcommit}`;
}

function tenantRow(t: TenantCapacity): string[] {
  return [
    t.name,
    String(t.instances),
    formatCores(t.requested.cpu),
    formatCores(t.used.cpu),
    formatMemory(t.requested.memory),
    formatMemory(t.used.memory),
    t.quota === undefined ? String(t.units) : `${t.units} of ${t.quota}`,
    t.nodes.map((s) => `${s.node}:${s.instances}`).join(" ") || "-",
  ];
}

/** "cpu 1.2, 3.1 GiB" — the whole machine, "-" when its agent does not say. */
function machineText(m: Measured | undefined): string {
  if (!m) return "-";
  return `cpu ${formatCores(m.cpu)}, ${formatMemory(m.memory)}`;
}

/** "0.5 cpu, 256 MiB / 0.02 cpu, 40 MiB" */
function shareText(requested: Resources, used: Measured): string {
  return `${formatCores(requested.cpu)} cpu, ${formatBytes(requested.memory)} / ${formatCores(used.cpu)} cpu, ${formatMemory(used.memory)}`;
}
