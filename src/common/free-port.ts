/**
 * A TCP port the kernel says is free now on `host` (listen on 0, read it, close).
 * Another process may take it before the caller binds it: callers that can,
 * listen on 0 themselves; this is for a child process that needs a port named.
 */

import { once } from "node:events";
import { type AddressInfo, createServer } from "node:net";

export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
