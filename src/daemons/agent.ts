/**
 * `herd agent`: a node agent that joins a control plane (trading a join token
 * for its credential on the first start, agent/join.ts), until SIGINT or
 * SIGTERM; its instances keep running.
 */

import { mkdirSync } from "node:fs";
import { Agent, type AgentOptions } from "../agent/agent.ts";
import { agentToken, type CredentialSources } from "../agent/join.ts";
import { createLogger } from "../common/log.ts";
import { untilSignal } from "./signals.ts";

/** How long after its start an agent that has not joined says so. */
const NOT_ANSWERED_MS = 5000;

/** Runs an agent; resolves with the exit code once stopped. */
export async function runAgent(
  options: Omit<AgentOptions, "logger" | "token"> & {
    /** Where its token comes from, besides the credential kept in its data dir. */
    credentials: Omit<CredentialSources, "server" | "name" | "dataDir">;
  },
): Promise<number> {
  const { credentials, ...rest } = options;
  mkdirSync(options.dataDir, { recursive: true });
  const token = await agentToken({
    ...credentials,
    server: rest.server,
    name: rest.name,
    dataDir: rest.dataDir,
  });
  const agent = new Agent({ ...rest, token, logger: createLogger("herd").child("agent") });
  await agent.start();
  // "joined" once the control plane answers, not before: a refused credential never joins.
  let joined = false;
  void agent.answered.then(() => {
    joined = true;
    process.stdout.write(
      `herd agent ${options.name} joined ${options.server}; metrics: ${agent.metricsUrl ?? "off"}\n`,
    );
  });
  const waiting = setTimeout(() => {
    if (!joined)
      process.stdout.write(
        `herd agent ${options.name} started; waiting for ${options.server} to answer its heartbeat (the log above says why it has not yet)\n`,
      );
  }, NOT_ANSWERED_MS);
  const signal = await untilSignal();
  clearTimeout(waiting);
  await agent.stop();
  process.stdout.write(`${signal}: herd agent stopped; its instances keep running\n`);
  return 0;
}
