/**
 * Host names in the heartbeat reply's `peers` (a node's address, a tenant's
 * endpoint, a platform endpoint such as an etcd member given by name, which
 * etcd's TLS asks for), resolved with this machine's resolver: the addresses
 * an instance here would reach by that name. nftables matches addresses only,
 * so without this a name was left open and named in the isolation report.
 *
 *   resolve(peers) ─► names already looked up: replaced by their addresses (one entry each)
 *                  └► names not yet looked up: kept as they are, looked up now;
 *                     when the answer comes, onChange() (the agent applies the policy again)
 *   every minute: every name looked up again; a changed answer ─► onChange()
 *
 * A name that does not resolve stays a name (open, and reported, as before).
 */

import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Peers } from "../model/protocol.ts";
import { splitEndpoint } from "./firewall.ts";

/** The addresses of a host name (empty when it has none). */
export type Lookup = (name: string) => Promise<string[]>;

const systemLookup: Lookup = async (name) => (await lookup(name, { all: true })).map((a) => a.address);

/** How often names are looked up again. */
const AGAIN_MS = 60_000;

const join = (address: string, port: number) =>
  isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;

export class PeerNames {
  readonly #lookup: Lookup;
  readonly #onChange: () => void;
  /** Each name looked up, and its addresses (none: it did not resolve). */
  readonly #known = new Map<string, string[]>();
  readonly #asking = new Set<string>();
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  constructor(onChange: () => void, options: { lookup?: Lookup; againMs?: number } = {}) {
    this.#onChange = onChange;
    this.#lookup = options.lookup ?? systemLookup;
    this.#timer = setInterval(() => void this.#again(), options.againMs ?? AGAIN_MS);
    this.#timer.unref();
  }

  /** `peers` with every name whose addresses are known replaced by them; the others are looked up. */
  resolve(peers: Peers): Peers {
    const endpoints = (list: string[]) =>
      list.flatMap((e) => {
        const at = splitEndpoint(e);
        const addresses = at && this.addresses(at.host);
        return at && addresses ? addresses.map((a) => join(a, at.port)) : [e];
      });
    return {
      ...peers,
      nodes: peers.nodes.flatMap((n) => this.addresses(n.address)?.map((a) => ({ ...n, address: a })) ?? [n]),
      tenants: Object.fromEntries(Object.entries(peers.tenants).map(([t, list]) => [t, endpoints(list)])),
      platform: endpoints(peers.platform),
    };
  }

  stop(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /** A name's addresses when known; undefined for an address, while unknown (it is looked up) or when it has none. */
  addresses(host: string): string[] | undefined {
    if (isIP(host) !== 0) return undefined;
    const known = this.#known.get(host);
    if (known === undefined)
      void this.#ask(host).then((changed) => {
        if (changed && !this.#closed) this.#onChange();
      });
    return known?.length ? known : undefined;
  }

  /** Looks `name` up; whether its addresses differ from those known (a first answer with none does not). */
  async #ask(name: string): Promise<boolean> {
    if (this.#asking.has(name)) return false;
    this.#asking.add(name);
    try {
      const found = [...new Set(await this.#lookup(name).catch(() => []))].sort();
      const before = this.#known.get(name);
      this.#known.set(name, found);
      return (before ?? []).join() !== found.join();
    } finally {
      this.#asking.delete(name);
    }
  }

  async #again(): Promise<void> {
    const changed = await Promise.all([...this.#known.keys()].map((name) => this.#ask(name)));
    if (changed.includes(true) && !this.#closed) this.#onChange();
  }
}
