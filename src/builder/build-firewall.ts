/**
 * The firewall of builds: install scripts run as the builder's uids, and a
 * new TCP connection they make to this machine (any of its addresses: the
 * packets leave through `lo`) is reset, but for DNS (port 53). The internet
 * stays open (the npm registry, git dependencies), so a build reaches what
 * `npm install` reaches anywhere, and not the platform's API, the agents or
 * any tenant's instances on this machine.
 *
 *   table inet herd_build_<hash of the cache dir>, hook output:
 *     skuid in the builder's range, a SYN, out on lo,
 *       not port 53 nor the port of a proxy or registry the builds are given   reject (tcp reset)
 *
 * The table exists while a build command runs (held by each, deleted with
 * the last) and is written before the command starts: a build never runs
 * without it where nftables is there. One left by a builder killed during a
 * build goes when the next builder on the same cache dir starts.
 */

import { createHash } from "node:crypto";
import { findNft, firewallRemoveScript, isHostAddress, runNft } from "../agent/firewall.ts";
import { lastUid, type UidRange } from "../agent/uids.ts";
import { HerdError } from "../common/errors.ts";

/** The nft script that replaces the table with the rule for the uids, atomically. */
export function buildFirewallScript(
  table: string,
  uids: UidRange,
  allowPorts: readonly number[] = [],
): string {
  const open = [...new Set([53, ...allowPorts])].sort((a, b) => a - b);
  const ports = open.length === 1 ? String(open[0]) : `{ ${open.join(", ")} }`;
  // Removed and made anew in one transaction (the removal does not fail when it is not there).
  return [
    ...firewallRemoveScript(table).trimEnd().split("\n"),
    `table inet ${table} {`,
    "  chain output {",
    "    type filter hook output priority filter; policy accept;",
    `    meta skuid ${uids.first}-${lastUid(uids)} tcp flags & (syn | ack) == syn oifname "lo" tcp dport != ${ports} reject with tcp reset`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The table name of the builder whose cache lives at `cacheDir`. */
export function buildFirewallTable(cacheDir: string): string {
  return `herd_build_${createHash("sha256").update(cacheDir).digest("hex").slice(0, 10)}`;
}

/** The rule for one builder's uids, held while any of its commands runs. */
export class BuildFirewall {
  readonly #nft: string;
  readonly #table: string;
  readonly #uids: UidRange;
  readonly #allowPorts: readonly number[];
  #holders = 0;

  private constructor(nft: string, table: string, uids: UidRange, allowPorts: readonly number[]) {
    this.#nft = nft;
    this.#table = table;
    this.#uids = uids;
    this.#allowPorts = allowPorts;
  }

  /**
   * The firewall of the builder at `cacheDir`, or why there is none (not root, no `nft`);
   * `allowPorts`: ports of this machine builds may reach all the same (a local proxy's).
   */
  static open(
    cacheDir: string,
    uids: UidRange,
    allowPorts: readonly number[] = [],
  ): BuildFirewall | { missing: string } {
    const found = findNft();
    if ("missing" in found) return found;
    const table = buildFirewallTable(cacheDir);
    // One a builder killed during a build left behind (nothing of this process holds it yet).
    runNft(found.nft, firewallRemoveScript(table));
    return new BuildFirewall(found.nft, table, uids, allowPorts);
  }

  /** Puts the rule in place (the first holder writes it); the returned function lets go (the last deletes it). */
  hold(): () => void {
    if (this.#holders === 0) {
      const err = runNft(this.#nft, buildFirewallScript(this.#table, this.#uids, this.#allowPorts));
      if (err)
        throw new HerdError("unavailable", `build not started: nft refused the build firewall: ${err}`);
    }
    this.#holders++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#holders === 0) runNft(this.#nft, firewallRemoveScript(this.#table));
    };
  }
}

/**
 * The ports of this machine that the URLs in `env` name (a proxy on
 * 127.0.0.1:3128, a registry mirror on localhost:4873): what builds given
 * that env must still reach through the rule.
 */
export function localPortsOf(
  env: Readonly<Record<string, string>>,
  ownAddresses: readonly string[],
): number[] {
  const ports: number[] = [];
  for (const value of Object.values(env)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      continue;
    }
    const host = url.hostname.replace(/^\[|\]$/g, "");
    if (!(isHostAddress(host) || ownAddresses.includes(host))) continue;
    const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    if (Number.isInteger(port) && port > 0) ports.push(port);
  }
  return [...new Set(ports)];
}
