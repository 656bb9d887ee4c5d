/** `herd agent`: a node agent that joins a control plane, until SIGINT or SIGTERM (its instances keep running). */

import { mkdirSync } from "node:fs";
import { Agent, type AgentOptions } from "../agent/agent.ts";
import { createLogger } from "../common/log.ts";
import { untilSignal } from "./signals.ts";

/** Runs an agent; resolves with the exit code once stopped. */
export async function runAgent(options: Omit<AgentOptions, "logger">): Promise<number> {
  mkdirSync(options.dataDir, { recursive: true });
  const agent = new Agent({ ...options, logger: createLogger("herd").child("agent") });
  await agent.start();
  process.stdout.write(
    `herd agent ${options.name} joined ${options.server}; metrics: ${agent.metricsUrl ?? "off"}\n`,
  );
  await untilSignal();
  await agent.stop();
  return 0;
}
