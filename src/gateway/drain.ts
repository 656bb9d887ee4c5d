/**
 * A graceful stop of the gateway's listeners, as nginx's old master does in a
 * binary upgrade: stop accepting (a successor bound to the same port with
 * SO_REUSEPORT takes the new connections), finish the requests in flight,
 * answer every request arriving on an open connection with
 * `Connection: close` so the client reconnects (to the successor), then close
 * what stays idle.
 *
 *   drain ─► listener closed ─► each later response: Connection: close ─► socket ends
 *            └─ after idleGraceMs: idle keep-alive connections closed (every 250 ms)
 *            └─ all connections gone, or timeoutMs: resolve (the caller cuts the rest)
 *
 * An idle connection is not closed at once: a client may be writing its next
 * request on it right now, and closing it then would fail that request. A
 * client with steady traffic sends one within the grace and gets its answer.
 */

import type http from "node:http";
import net from "node:net";

/** How long a drain waits by default for connections to end before they are cut. */
export const DEFAULT_DRAIN_MS = 10_000;

/** How long an idle keep-alive connection may stay open after the drain begins. */
const IDLE_GRACE_MS = 1_000;

/** Drains `servers` (HTTP and HTTPS of one process); resolves when they are closed or at `timeoutMs`. */
export async function drainServers(
  servers: readonly http.Server[],
  timeoutMs = DEFAULT_DRAIN_MS,
  idleGraceMs = Math.min(IDLE_GRACE_MS, timeoutMs),
): Promise<void> {
  const closed = servers.map(
    (server) =>
      new Promise<void>((resolve) => {
        if (!server.listening) {
          resolve();
          return;
        }
        server.once("close", () => resolve());
        // From here on every response asks the client to close its connection.
        server.prependListener("request", closeAfterResponse);
        // net's close, not http's: http.Server#close also ends idle keep-alive connections at once.
        net.Server.prototype.close.call(server);
      }),
  );
  let idleTimer: NodeJS.Timeout | undefined;
  const closeIdle = () => {
    for (const server of servers) server.closeIdleConnections();
    idleTimer = setTimeout(closeIdle, 250);
  };
  idleTimer = setTimeout(closeIdle, idleGraceMs);
  let deadline: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(closed),
    new Promise<void>((resolve) => {
      deadline = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(idleTimer);
  clearTimeout(deadline);
}

function closeAfterResponse(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.shouldKeepAlive = false;
}
