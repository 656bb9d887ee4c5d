/**
 * The platform roles' entries in `herd`'s registry, in a module of their own:
 * main.ts finds them without loading the other commands' modules, so a
 * `herd up` process holds none of them (docs/benchmarks.md, Footprint).
 */

/** A subcommand that runs a platform role (platform.ts); it parses its own flags. */
export interface PlatformCommand {
  name: "up" | "server" | "agent" | "gateway" | "down";
  summary: string;
}

/** The platform roles, in help order. */
export const PLATFORM_COMMANDS: PlatformCommand[] = [
  { name: "up", summary: "Run the whole platform here (server, agent, gateway); data in ./.herd" },
  { name: "server", summary: "Run the control plane (API, store, controllers)" },
  { name: "agent", summary: "Run a node agent: herd agent --server URL --name NAME --data DIR" },
  { name: "gateway", summary: "Run the gateway (reverse proxy to running instances)" },
  { name: "down", summary: "Stop the platform of a data dir (gateway, apps), also when its herd up is gone" },
];
