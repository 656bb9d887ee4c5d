/**
 * The host's loopback endpoints an instance is given (the telemetry relay,
 * the config feed, the node's internal gateway, a local database in the
 * service's env: any `127.0.0.1:PORT` or `localhost:PORT` in an env value)
 * made reachable from a container in its own network namespace, where
 * 127.0.0.1 is its own: the value is rewritten to the bridge's address on the
 * host, and the agent forwards that address and port to 127.0.0.1:PORT.
 *
 *   container ─► <bridge gateway>:PORT ─► LoopbackForwarder (agent) ─► 127.0.0.1:PORT
 *
 * A forwarder lives as long as the agent; the next agent forwards again for
 * the containers it adopts (their env names the ports).
 */

import { createConnection, createServer, type Server } from "node:net";
import type { Logger } from "../common/log.ts";

// Not after a name character or a dot: `app.localhost:80` is a host name of its own.
const LOOPBACK = /(?<![\w.-])(?:127\.0\.0\.1|localhost):(\d{1,5})(?!\d)/g;

/** env with every loopback host:port pointed at `gateway`, and the ports that need forwarding. */
export function rewriteLoopback(
  env: Record<string, string>,
  gateway: string,
): { env: Record<string, string>; ports: number[] } {
  const ports = new Set<number>();
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    out[k] = v.replace(LOOPBACK, (_m, port: string) => {
      ports.add(Number(port));
      return `${gateway}:${port}`;
    });
  }
  return { env: out, ports: [...ports].filter((p) => p > 0 && p < 65536) };
}

/** The ports an env already rewritten for `gateway` forwards (a container adopted after an agent restart). */
export function forwardedPorts(env: string[], gateway: string): number[] {
  const ports = new Set<number>();
  const prefix = `${gateway}:`;
  for (const entry of env) {
    let at = entry.indexOf(prefix);
    while (at >= 0) {
      const m = /^\d{1,5}/.exec(entry.slice(at + prefix.length));
      if (m) ports.add(Number(m[0]));
      at = entry.indexOf(prefix, at + prefix.length);
    }
  }
  return [...ports];
}

/** TCP forwarders from `address` (the bridge's address on the host) to the same ports on 127.0.0.1. */
export class LoopbackForwarder {
  readonly address: string;
  readonly #log: Logger;
  readonly #servers = new Map<number, Promise<Server | undefined>>();

  constructor(address: string, log: Logger) {
    this.address = address;
    this.#log = log;
  }

  /** Forwards each port (once); a port that cannot be bound is logged and left out. */
  async forward(ports: number[]): Promise<void> {
    await Promise.all(ports.map((p) => this.#forward(p)));
  }

  close(): void {
    for (const s of this.#servers.values()) void s.then((server) => server?.close());
    this.#servers.clear();
  }

  #forward(port: number): Promise<Server | undefined> {
    let server = this.#servers.get(port);
    if (!server) {
      server = new Promise((resolve) => {
        const s = createServer((inbound) => {
          const outbound = createConnection({ host: "127.0.0.1", port });
          inbound.pipe(outbound).pipe(inbound);
          inbound.on("error", () => outbound.destroy());
          outbound.on("error", () => inbound.destroy());
        });
        s.once("error", (err: NodeJS.ErrnoException) => {
          // In use: another agent on this host and engine forwards it already.
          if (err.code === "EADDRINUSE") this.#log.debug("a loopback port is forwarded already", { port });
          else this.#log.warn("cannot forward a loopback port into containers", { port, err });
          this.#servers.delete(port);
          resolve(undefined);
        });
        s.listen(port, this.address, () => {
          s.unref();
          resolve(s);
        });
      });
      this.#servers.set(port, server);
    }
    return server;
  }
}
