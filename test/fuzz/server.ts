/**
 * The fuzzer's server: a control plane in its own process (so that a crash is
 * seen as one), with its data in the directory given as the first argument.
 * Prints one JSON line `{url, adminToken, spans}` once it listens; stops on SIGTERM
 * or when its stdin closes.
 * Errors it logs go to stderr, where the fuzzer reads them.
 */

import { createLogger } from "../../src/common/log.ts";
import { startServer } from "../../src/daemons/control-plane.ts";

const dataDir = process.argv[2];
if (!dataDir) throw new Error("usage: node test/fuzz/server.ts <data dir>");
const server = await startServer({
  dataDir,
  port: 0,
  logger: createLogger("herd", "error"),
});
process.stdout.write(
  `${JSON.stringify({ url: server.url, adminToken: server.adminToken, spans: await server.ingestTokens.forTenant("default") })}\n`,
);
const stop = () => void server.close().finally(() => process.exit(0));
process.on("SIGTERM", stop);
// The fuzzer holds our stdin: if it dies without a SIGTERM, this server stops too.
process.stdin.on("end", stop).resume();
