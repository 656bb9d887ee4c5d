/**
 * More sockets accepting the API's connections. Node accepts one new
 * connection per listening socket per turn of its event loop, so a control
 * plane whose turns are long (a heartbeat flood, its own metrics scrape) took
 * a connection per turn: 100 API calls on new connections reached it over
 * 5–6 s in bench:control-plane while the clients had connected within 25 ms.
 * The API listens through several sockets on its port (SO_REUSEPORT: the
 * kernel spreads new connections over them), each handing its connections to
 * the one HTTP server, so a turn accepts one per socket.
 *
 * A socket with SO_REUSEPORT shares its port with any later one of the same
 * user that sets it too, so the port is first checked with a plain listener:
 * a second `herd up` on a port in use is refused, not let in beside the first.
 */

import type { Server as HttpServer } from "node:http";
import net, { type AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { HerdError } from "../common/errors.ts";

/** Listening sockets of the API in all (the one Fastify opens and the rest). */
export const ACCEPTORS = 8;

/** Whether nothing listens on `host:port` (port 0: a free one is picked, so yes). */
export async function portFree(host: string, port: number): Promise<boolean> {
  if (port === 0) return true;
  const probe = net.createServer();
  return new Promise((resolve, reject) => {
    probe.once("error", (err: NodeJS.ErrnoException) =>
      err.code === "EADDRINUSE" ? resolve(false) : reject(err),
    );
    probe.listen({ host, port }, () => probe.close(() => resolve(true)));
  });
}

/**
 * Opens `count - 1` more listeners on the port `server` listens on (with
 * SO_REUSEPORT, as it must), each giving its connections to `server`; returns
 * what stops them listening. A listener that cannot open is left out (`onError`).
 */
export async function addAcceptors(
  server: HttpServer,
  host: string,
  port: number,
  onError: (err: Error) => void,
  count = ACCEPTORS,
): Promise<() => void> {
  const extra: net.Server[] = [];
  for (let n = 1; n < count; n++) {
    // noDelay as the HTTP server's own listener has it (Node's default for http.Server).
    const acceptor = net.createServer({ noDelay: true }, (socket) => server.emit("connection", socket));
    try {
      await new Promise<void>((resolve, reject) => {
        acceptor.once("error", reject);
        acceptor.listen({ host, port, reusePort: true }, () => {
          acceptor.off("error", reject);
          resolve();
        });
      });
      extra.push(acceptor);
    } catch (err) {
      onError(err as Error);
      break;
    }
  }
  // Stops listening at once. Not waiting for close's callback: a listener counts the connections
  // it accepted until they end, and those belong to the HTTP server, which closes them after.
  return () => {
    for (const s of extra) s.close();
  };
}

/**
 * Starts `app` listening on `host:port` through ACCEPTORS sockets; a port in
 * use (by anything, a herd of the same user too) is an `unavailable` error
 * naming it. Returns what stops the extra sockets (before `app.close()`).
 */
export async function listenApi(
  app: FastifyInstance,
  host: string,
  port: number,
  onError: (err: Error) => void,
): Promise<() => void> {
  const inUse = () =>
    new HerdError("unavailable", `port ${port} is in use by another program: stop it or pass --port`);
  if (!(await portFree(host, port))) throw inUse();
  // Node's listen option reusePort (SO_REUSEPORT), which Fastify passes on but does not type.
  const listenOptions = { port, host, reusePort: true };
  await app.listen(listenOptions).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "EADDRINUSE") throw inUse();
    throw err;
  });
  return addAcceptors(app.server, host, (app.server.address() as AddressInfo).port, onError);
}
