/**
 * A TCP port free on `host` now, for a listener that binds it a moment later
 * (forked gateway workers that must share one port, a child process told its
 * port, a control plane that keeps its address across restarts).
 *
 * Picked below the kernel's ephemeral range (ip_local_port_range, by default
 * 32768–60999), outside the agent's instance ports (20000–29999): 10000–19999
 * and 30000 up to that range. The kernel hands ports of the ephemeral range to
 * every outgoing connection and every listen on port 0, so a port picked there
 * and released can be taken by any process on the machine before it is bound
 * again; below it only an explicit bind takes a port. One process never gets
 * the same port twice in a row of picks (a caller asking for several ports
 * before binding any). When none of the tries is free, the kernel's pick
 * (port 0) is the answer.
 */

import { readFileSync } from "node:fs";
import net from "node:net";

const TRIES = 50;
/** Ports this process handed out lately (forgotten in bulk once there are many). */
const given = new Set<number>();

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

/** The ranges freePort picks from: [first, last] pairs below the ephemeral range, off the agent's. */
export function pickRanges(low = ephemeralLow()): [number, number][] {
  const ranges: [number, number][] = [[10000, Math.min(19999, low - 1)]];
  if (low - 1 >= 30000) ranges.push([30000, low - 1]);
  return ranges.filter(([a, b]) => b - a >= 100);
}

/** A port free on `host` now, outside the ranges the kernel and the agent hand out by themselves. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const ranges = pickRanges();
  const size = ranges.reduce((n, [a, b]) => n + b - a + 1, 0);
  if (given.size > 1000) given.clear();
  for (let i = 0; i < TRIES && size > 0; i++) {
    let n = Math.floor(Math.random() * size);
    let candidate = 0;
    for (const [a, b] of ranges) {
      if (n <= b - a) {
        candidate = a + n;
        break;
      }
      n -= b - a + 1;
    }
    if (given.has(candidate)) continue;
    given.add(candidate); // before the try: a concurrent pick skips it
    const port = await tryPort(candidate, host);
    if (port !== undefined) return port;
    given.delete(candidate);
  }
  const port = await tryPort(0, host);
  if (port === undefined) throw new Error(`no free port on ${host}`);
  return port;
}
