/**
 * The entry module of a gateway process: `node src/daemons/gateway-main.ts
 * [herd gateway's flags]`. herd up starts its gateway with it
 * (gateway/cluster-child.ts), and `herd gateway` run from the command line
 * re-executes itself into it (daemons/runtime.ts), so a gateway loads
 * `herd gateway`'s flags and the gateway, not the CLI's other commands.
 * An error is printed as the CLI prints it (`herd: <message>`, exit 1).
 */

import { runGateway } from "../cli/gateway-command.ts";

try {
  process.exitCode = await runGateway(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`herd: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
