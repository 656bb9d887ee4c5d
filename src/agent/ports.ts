/**
 * Port allocation for instances on this node: a free port from a range, never
 * one an instance of ours holds or was promised, and never one something else
 * on the machine is bound to (checked by binding it on 0.0.0.0 and 127.0.0.1).
 */

import { randomInt } from "node:crypto";
import { createServer } from "node:net";
import { HerdError } from "../common/errors.ts";

/** The range instance ports come from. */
export interface PortRange {
  min: number;
  max: number;
}

export const DEFAULT_PORT_RANGE: PortRange = { min: 20000, max: 29999 };

/**
 * "MIN-MAX" (e.g. 21000-21999) as a range, for `herd agent --ports`: agents
 * sharing one machine need ranges of their own, since a port checked free by
 * one can be taken by the other's instance before its own binds it.
 */
export function parsePortRange(text: string): PortRange {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  const min = Number(m?.[1]);
  const max = Number(m?.[2]);
  if (!m || min < 1024 || max > 65535 || min > max) {
    throw new HerdError(
      "invalid",
      `--ports must be MIN-MAX within 1024-65535, like 21000-21999, got ${text}`,
    );
  }
  return { min, max };
}

/** Hands out instance ports; remembers which are ours until released. */
export class PortAllocator {
  readonly #range: PortRange;
  readonly #taken = new Set<number>();
  // Where the next search starts, so a just-released port is not handed out again at once.
  #next: number;

  constructor(range: PortRange = DEFAULT_PORT_RANGE) {
    this.#range = range;
    // A random start: two agents on one machine (tests, or a forgotten --ports) that both began at
    // min would check the same port free at the same moment and hand it to two instances.
    this.#next = range.min + randomInt(range.max - range.min + 1);
  }

  /** A port nothing holds, now ours until release(). Rejects when the whole range is taken. */
  async allocate(): Promise<number> {
    const size = this.#range.max - this.#range.min + 1;
    for (let i = 0; i < size; i++) {
      const port = this.#range.min + ((this.#next - this.#range.min + i) % size);
      if (this.#taken.has(port)) continue;
      // Claim it before the await, so two concurrent allocations never get the same port.
      this.#taken.add(port);
      if (await isPortFree(port)) {
        this.#next = port + 1 > this.#range.max ? this.#range.min : port + 1;
        return port;
      }
      this.#taken.delete(port);
    }
    throw new HerdError("unavailable", `no free port in ${this.#range.min}-${this.#range.max}`);
  }

  /** Marks a port as ours (an adopted instance keeps the port it had). */
  reserve(port: number): void {
    this.#taken.add(port);
  }

  /** Gives a port back. */
  release(port: number): void {
    this.#taken.delete(port);
  }
}

/** Whether nothing on this machine is bound to port, on either 0.0.0.0 or 127.0.0.1. */
export async function isPortFree(port: number): Promise<boolean> {
  return (await canBind(port, "0.0.0.0")) && (await canBind(port, "127.0.0.1"));
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
