/**
 * One guard for every URL herd fetches on someone's say-so (alert webhooks,
 * registered scrape targets, route JWKS URLs, trace forwarding): no
 * loopback, private or otherwise internal address unless the operator allowed
 * its range, no redirects, a byte cap and a time limit on each answer.
 *
 *   guard.fetch(url) ─► http(s) only ─► dns.lookup(all) ─► every address public or allowed?
 *                                                              │ no: HerdError forbidden (names the range and the flag)
 *                                                              ▼ yes
 *            node:http(s), connecting only to the addresses checked (pinned lookup: no second resolution)
 *                                                              ▼
 *            3xx: forbidden (no redirects) · body over maxBytes: too_large · timeoutMs: TimeoutError
 *
 * The addresses are resolved once and the connection is made to them (the
 * request's own lookup returns the checked list), so a name that resolves
 * to a public address for the check and a private one for the connection
 * (DNS rebinding) reaches nothing it was not allowed to.
 */

import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import type { IncomingMessage } from "node:http";
import { nodeHttp, nodeHttps } from "./node-http.ts";

const httpRequest = nodeHttp.request;

import { BlockList, isIP, type LookupFunction } from "node:net";
import { HerdError } from "./errors.ts";

/** The flag that allows ranges, named in every refusal. */
export const ALLOW_FLAG = "--allow-fetch";

/** Resolves a host name to all its addresses (dns.lookup with all: true by default). */
export type ResolveAll = (hostname: string) => Promise<LookupAddress[]>;

/** Ranges refused unless allowed, with what a refusal calls them. */
const REFUSED: readonly (readonly [string, string])[] = [
  ["0.0.0.0/8", "an unspecified"],
  ["10.0.0.0/8", "a private"],
  ["100.64.0.0/10", "a shared (CGNAT)"],
  ["127.0.0.0/8", "a loopback"],
  ["169.254.0.0/16", "a link-local"],
  ["172.16.0.0/12", "a private"],
  ["192.0.0.0/24", "an IETF protocol"],
  ["192.168.0.0/16", "a private"],
  ["198.18.0.0/15", "a benchmarking"],
  ["224.0.0.0/4", "a multicast"],
  ["240.0.0.0/4", "a reserved"],
  ["::/128", "an unspecified"],
  ["::1/128", "a loopback"],
  ["100::/64", "a discard"],
  ["fc00::/7", "a unique-local"],
  ["fe80::/10", "a link-local"],
  ["fec0::/10", "a site-local"],
  ["ff00::/8", "a multicast"],
];

/** One BlockList per range name, so a refusal can say which range it was. */
const REFUSED_LISTS: readonly (readonly [string, BlockList])[] = (() => {
  const byName = new Map<string, BlockList>();
  for (const [cidr, name] of REFUSED) {
    let list = byName.get(name);
    if (list === undefined) {
      list = new BlockList();
      byName.set(name, list);
    }
    addCidr(list, cidr);
  }
  return [...byName];
})();

/** Adds `a.b.c.d/n`, `v6/n` or a single address to a BlockList; throws on anything else. */
function addCidr(list: BlockList, text: string): void {
  const slash = text.indexOf("/");
  const address = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(address);
  if (family === 0) throw new Error(`${text} is not an address or CIDR range`);
  const type = family === 4 ? "ipv4" : "ipv6";
  if (slash === -1) {
    list.addAddress(address, type);
    return;
  }
  const bits = text.slice(slash + 1);
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128))
    throw new Error(`${text} has an invalid prefix length`);
  list.addSubnet(address, prefix, type);
}

/** The 8 16-bit groups of an IPv6 address (zone id dropped), or null when it is not one. */
function ipv6Groups(address: string): number[] | null {
  let text = address;
  const zone = text.indexOf("%");
  if (zone !== -1) text = text.slice(0, zone);
  if (isIP(text) !== 6) return null;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.indexOf(".", lastColon) !== -1) {
    // A trailing dotted quad is the last two groups.
    const q = text
      .slice(lastColon + 1)
      .split(".")
      .map(Number);
    tail.push((q[0] << 8) | q[1], (q[2] << 8) | q[3]);
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith("::")) text = text.slice(0, -1);
  }
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const gap = text.indexOf("::");
  let groups: number[];
  const want = 8 - tail.length;
  if (gap === -1) groups = parse(text);
  else {
    const head = parse(text.slice(0, gap));
    const rest = parse(text.slice(gap + 2));
    groups = [...head, ...new Array(want - head.length - rest.length).fill(0), ...rest];
  }
  groups.push(...tail);
  return groups.length === 8 ? groups : null;
}

/**
 * The IPv4 address an IPv6 address carries and would reach, when it is of a
 * form that does: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d),
 * NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:AABB:CCDD::). Null otherwise.
 */
export function embeddedIpv4(address: string): string | null {
  const g = ipv6Groups(address);
  if (g === null) return null;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && g[5] === 0xffff) return v4(g[6], g[7]);
  // ::a.b.c.d, but not :: and ::1 themselves (refused as unspecified and loopback).
  if (zeros(0, 6) && (g[6] !== 0 || g[7] > 1)) return v4(g[6], g[7]);
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) return v4(g[6], g[7]);
  if (g[0] === 0x2002) return v4(g[1], g[2]);
  return null;
}

/** What a guarded fetch sends. */
export interface GuardedRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** The whole fetch (connect, answer, body) at most this long; a TimeoutError after it. Default 10 s. */
  timeoutMs?: number;
  /** Bodies larger than this fail with too_large. Default 1 MiB. */
  maxBytes?: number;
  /** Ends the fetch early (its reason is the error). */
  signal?: AbortSignal;
}

/** A fetched answer, read whole. */
export interface GuardedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface UrlGuardOptions {
  /** Addresses and CIDR ranges that may be fetched although internal (e.g. `127.0.0.0/8`, `10.0.0.0/8`). */
  allow?: readonly string[];
  /** Name resolution (tests); default dns.lookup with all addresses. */
  resolve?: ResolveAll;
}

/** Default: every address the name has, in the resolver's order. */
const resolveAll: ResolveAll = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true, order: "verbatim" }, (err, addresses) =>
      err ? reject(err) : resolve(addresses),
    ),
  );

/** Checks and fetches URLs herd was handed. One per process; cheap to keep. */
export class UrlGuard {
  /** The allow list as given (for messages and logs). */
  readonly allowed: readonly string[];
  readonly #allow = new BlockList();
  readonly #resolve: ResolveAll;

  constructor(options: UrlGuardOptions = {}) {
    this.allowed = options.allow ?? [];
    for (const cidr of this.allowed) addCidr(this.#allow, cidr);
    this.#resolve = options.resolve ?? resolveAll;
  }

  /**
   * Parses the value of `--allow-fetch` (comma-separated addresses and CIDR
   * ranges; repeated flags add up). Throws a HerdError naming the bad entry.
   */
  static parseAllowList(values: readonly string[], flag = ALLOW_FLAG): string[] {
    const out: string[] = [];
    for (const value of values) {
      for (const entry of value.split(",")) {
        const cidr = entry.trim();
        if (cidr === "") continue;
        try {
          addCidr(new BlockList(), cidr);
        } catch (err) {
          throw new HerdError(
            "invalid",
            `${flag}: ${(err as Error).message} (expected e.g. 127.0.0.0/8,10.0.0.0/8,::1)`,
          );
        }
        out.push(cidr);
      }
    }
    return out;
  }

  /** Why `address` may not be fetched (e.g. "127.0.0.1 is a loopback address…"), or null when it may. */
  refusal(found: string): string | null {
    // A link-local address may come with its zone (fe80::1%eth0).
    const address = found.split("%")[0];
    const family = isIP(address);
    if (family === 0) return `${address} is not an IP address`;
    // An IPv6 form that carries an IPv4 address is judged (and allowed) as that IPv4 address.
    const inner = family === 6 ? embeddedIpv4(address) : null;
    const checked = inner ?? address;
    const type = isIP(checked) === 4 ? "ipv4" : "ipv6";
    if (this.#allow.check(checked, type)) return null;
    for (const [name, list] of REFUSED_LISTS) {
      if (!list.check(checked, type)) continue;
      const shown = inner === null ? address : `${address} (${inner})`;
      return `${shown} is ${name} address: herd fetches internal addresses only in ranges allowed by ${ALLOW_FLAG} (e.g. ${ALLOW_FLAG} ${checked}${type === "ipv4" ? "/32" : "/128"})`;
    }
    return null;
  }

  /**
   * The addresses `hostname` resolves to, all checked; throws HerdError
   * forbidden when any is refused (a name with one internal address is refused whole).
   */
  async addresses(hostname: string): Promise<LookupAddress[]> {
    const literal = hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
    const family = isIP(literal);
    const found = family !== 0 ? [{ address: literal, family }] : await this.#resolve(literal);
    if (found.length === 0) throw new HerdError("unavailable", `${hostname} resolves to no address`);
    for (const a of found) {
      const why = this.refusal(a.address);
      if (why !== null) {
        throw new HerdError("forbidden", family !== 0 ? why : `${hostname} resolves to ${why}`);
      }
    }
    return found;
  }

  /**
   * Fetches `url` (http or https): refuses internal addresses unless allowed,
   * follows no redirect (a 3xx is an error), reads at most `maxBytes`.
   */
  async fetch(url: string, init: GuardedRequest = {}): Promise<GuardedResponse> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new HerdError("invalid", `${url} is not a URL`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
      throw new HerdError("invalid", `${parsed.protocol} URLs are not fetched; use http: or https:`);
    const timeoutMs = init.timeoutMs ?? 10_000;
    const maxBytes = init.maxBytes ?? 1024 * 1024;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = init.signal === undefined ? timeout : AbortSignal.any([init.signal, timeout]);
    const checked = await this.addresses(parsed.hostname);
    signal.throwIfAborted();
    // The connection goes to the checked addresses only: its lookup answers with them.
    // node:http, not undici: one fewer HTTP client in every process that fetches (docs/benchmarks.md, Footprint).
    const send = parsed.protocol === "https:" ? nodeHttps().request : httpRequest;
    const req = send(parsed, {
      method: init.method ?? "GET",
      headers: init.headers,
      lookup: pinnedLookup(checked) as LookupFunction,
      agent: false,
      signal,
    });
    try {
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        req.once("response", resolve);
        req.on("error", reject); // kept: a late error (the body cut short) is no unhandled event
        req.end(init.body);
      });
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && status !== 304) {
        const location = res.headers.location;
        throw new HerdError(
          "forbidden",
          `${parsed.origin} answered ${status}${location ? ` (to ${String(location).slice(0, 200)})` : ""}: herd follows no redirects; use the final URL`,
        );
      }
      const length = Number(res.headers["content-length"] ?? -1);
      if (length > maxBytes) throw tooLarge(parsed, maxBytes);
      const chunks: Buffer[] = [];
      let bytes = 0;
      for await (const chunk of res) {
        bytes += (chunk as Buffer).length;
        if (bytes > maxBytes) throw tooLarge(parsed, maxBytes);
        chunks.push(chunk as Buffer);
      }
      return { status, headers: res.headers, body: Buffer.concat(chunks, bytes) };
    } catch (err) {
      // The abort's reason (a TimeoutError) says more than the request's AbortError.
      if (signal.aborted && !(err instanceof HerdError)) throw signal.reason;
      throw err;
    } finally {
      // Its own connection (agent: false): closed whatever happened, an unread body with it.
      req.destroy();
    }
  }
}

function tooLarge(url: URL, maxBytes: number): HerdError {
  return new HerdError("too_large", `${url.origin} answered more than ${maxBytes} bytes`);
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/** A `lookup` for net.connect that answers with addresses already checked, never asking DNS again. */
function pinnedLookup(addresses: LookupAddress[]) {
  return (
    _hostname: string,
    options: { family?: number | string; all?: boolean },
    callback: LookupCallback,
  ) => {
    const want =
      options.family === 4 || options.family === "IPv4"
        ? 4
        : options.family === 6 || options.family === "IPv6"
          ? 6
          : 0;
    const usable = want === 0 ? addresses : addresses.filter((a) => a.family === want);
    if (usable.length === 0) {
      callback(
        Object.assign(new Error("no checked address of the family asked for"), { code: "ENOTFOUND" }),
        "",
      );
      return;
    }
    if (options.all) callback(null, usable);
    else callback(null, usable[0].address, usable[0].family);
  };
}
