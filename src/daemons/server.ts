/** `herd server`: the control plane alone (API, store, controllers) until SIGINT or SIGTERM. */

import { createLogger } from "../common/log.ts";
import { type ServerOptions, startServer } from "./control-plane.ts";
import { untilSignal } from "./signals.ts";

/** Runs the control plane; resolves with the exit code once stopped. */
export async function runServer(options: Omit<ServerOptions, "logger">): Promise<number> {
  const server = await startServer({ ...options, logger: createLogger("herd") });
  process.stdout.write(
    `herd server: ${server.url}/api/v1\nadmin token: ${server.adminTokenFile}\n${server.caFile ? `API CA: ${server.caFile}\n` : ""}`,
  );
  await untilSignal();
  await server.close();
  return 0;
}
