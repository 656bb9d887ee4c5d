/**
 * A TCP port free on `host` now, for a listener that binds it a moment later
 * (forked gateway workers that must share one port, a child process told its
 * port, a control plane that keeps its address across restarts).
 *
 * Picked below the kernel's ephemeral range (ip_local_port_range, by default
 * 32768–60999) and above the agent's instance ports (20000–29999): the kernel
 * hands ports of the ephemeral range to every outgoing connection and every
 * listen on port 0, so a port picked there and released can be taken by any
 * process on the machine before it is bound again. Below that range only an
 * explicit bind takes a port. When the machine leaves no such range, or none
 * of the tries is free, the kernel's pick (port 0) is the answer.
 */

import { readFileSync } from "node:fs";
import net from "node:net";

const LOW = 30000;
const TRIES = 50;

/** The first port of the kernel's ephemeral range (32768 when it cannot be read). */
export function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Binds `port` on `host` and releases it: its number when that worked, undefined when taken. */
function tryPort(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(undefined));
    server.listen({ port, host, exclusive: true }, () => {
      const bound = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(bound));
    });
  });
}

/** A port free on `host` now, outside the ranges the kernel and the agent hand out by themselves. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const high = ephemeralLow() - 1;
  if (high - LOW >= 100) {
    for (let i = 0; i < TRIES; i++) {
      const port = await tryPort(LOW + Math.floor(Math.random() * (high - LOW + 1)), host);
      if (port !== undefined) return port;
    }
  }
  const port = await tryPort(0, host);
  if (port === undefined) throw new Error(`no free port on ${host}`);
  return port;
}
