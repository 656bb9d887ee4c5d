/**
 * The firewall between containers against a real dockerd this test starts
 * under a temp dir (docker-daemon.ts startDockerd) and nftables (Debian
 * nftables): containers of one app reach each other, containers of another
 * app do not (directly on the bridge, nor through a published port on the
 * host), and every container reaches the host endpoints its env names (the
 * gateway's internal listener, the relay) through the bridge address.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { type ContainerFirewallState, containerFirewallScript } from "./docker-firewall.ts";
import { withTestDockerd } from "./dockerd.case.test.ts";
import { get, harness, waitFor } from "./driver.case.test.ts";

const docker = withTestDockerd("herd-dockerfw-", { nft: "nftables" });

// An HTTP server on $PORT that answers /connect?to=HOST:PORT with "open" or "closed" (no answer in 1.5 s).
const PROBE = `
const http = require("node:http"), net = require("node:net");
http.createServer((req, res) => {
  const to = new URL(req.url, "http://x").searchParams.get("to");
  if (req.url === "/ipv6") return res.end(String(Object.values(require("node:os").networkInterfaces()).flat().filter((a) => a.family === "IPv6").length));
  if (!to) return res.end("probe " + process.env.HERD_INSTANCE + "\\n");
  const [host, port] = to.split(":");
  const s = net.connect({ host, port: Number(port), timeout: 1500 });
  const done = (r) => { s.destroy(); if (!res.writableEnded) res.end(r); };
  s.on("connect", () => done("open")).on("timeout", () => done("closed")).on("error", () => done("closed"));
}).listen(Number(process.env.PORT));
`;

const tables = () => spawnSync("nft", ["list", "tables"], { encoding: "utf8" }).stdout;

/** One container of acme/a on bridge br-x, with `more` on top. */
const oneGuest = (table: string, more: Partial<ContainerFirewallState> = {}): ContainerFirewallState => ({
  table,
  bridge: "br-x",
  gateway: "10.9.0.1",
  ports: { min: 20000, max: 29999 },
  protect: [],
  guests: [{ ip: "10.9.0.2", group: "acme/a", port: 20001, forwarded: [] }],
  ...more,
});

/** nft itself takes the script (where it can be asked: root and nftables). */
const nftAccepts = (script: string) => {
  const check = spawnSync("nft", ["-c", "-f", "-"], { input: script, encoding: "utf8" });
  if (process.getuid?.() === 0 && check.error === undefined) assert.equal(check.status, 0, check.stderr);
};

test("the rules: one group's containers reach each other; other containers, ports and endpoints are closed", () => {
  const script = containerFirewallScript({
    table: "herdc_br_x_1",
    bridge: "br-x",
    gateway: "10.9.0.1",
    ports: { min: 20000, max: 29999 },
    protect: [{ address: "127.0.0.1", port: 7000 }],
    guests: [
      { ip: "10.9.0.2", group: "t/a", port: 20001, forwarded: [5000] },
      { ip: "10.9.0.3", group: "t/a", port: 20002, forwarded: [5000] },
      { ip: "10.9.0.4", group: "t/b", port: 20003, forwarded: [5000, 5432] },
    ],
  });
  assert.match(
    script,
    /ip saddr \{ 10\.9\.0\.2, 10\.9\.0\.3 \} ip daddr \{ 10\.9\.0\.2, 10\.9\.0\.3 \} accept/,
  );
  assert.match(script, /ip saddr \{ 10\.9\.0\.2, 10\.9\.0\.3, 10\.9\.0\.4 \} drop/);
  assert.match(script, /ip saddr 10\.9\.0\.4 tcp dport \{ 5000, 5432, 20003 \} accept/);
  assert.match(script, /ip daddr 10\.9\.0\.1 tcp dport \{ 5000, 5432 \} drop/);
  assert.match(script, /tcp dport \{ 20001, 20002, 20003 \} drop/);
  assert.match(script, /tcp dport 20000-29999 drop/);
  assert.match(script, /tcp dport 7000 drop/);
  // Without containers the tables only go.
  const empty = containerFirewallScript({
    table: "herdc_br_x_1",
    bridge: "br-x",
    gateway: "10.9.0.1",
    ports: { min: 20000, max: 29999 },
    protect: [],
    guests: [],
  });
  assert.doesNotMatch(empty, /chain/);
});

test("a container to another node: its tenant's endpoints there open, the node's instance range closed", () => {
  const script = containerFirewallScript({
    table: "herdc_br_x_2",
    bridge: "br-x",
    gateway: "10.9.0.1",
    ports: { min: 20000, max: 29999 },
    protect: [],
    guests: [
      { ip: "10.9.0.2", group: "acme/a", port: 20001, forwarded: [] },
      { ip: "10.9.0.3", group: "acme/b", port: 20002, forwarded: [] },
      { ip: "10.9.0.4", group: "rival/c", port: 20003, forwarded: [] },
    ],
    peers: {
      version: "v1",
      closed: true,
      nodes: [
        { address: "192.0.2.7", ports: { min: 22000, max: 22999 }, metricsPort: 9181 },
        { address: "fd00::7", ports: { min: 22000, max: 22999 } },
      ],
      tenants: { acme: ["192.0.2.7:22001", "[fd00::7]:22002"] },
      platform: ["192.0.2.9:2379"],
    },
  });
  const chain = script.slice(script.indexOf("chain peers"));
  assert.deepEqual(chain.split("\n").slice(1, 4), [
    "    ip saddr { 10.9.0.2, 10.9.0.3, 10.9.0.4 } ip daddr 192.0.2.9 tcp dport 2379 drop",
    "    ip saddr { 10.9.0.2, 10.9.0.3 } ip daddr . tcp dport { 192.0.2.7 . 22001 } accept",
    "    ip saddr { 10.9.0.2, 10.9.0.3, 10.9.0.4 } ip daddr 192.0.2.7 tcp dport { 22000-22999, 9181 } drop",
  ]);
  assert.match(script, /hook forward priority filter; policy accept;\n {4}iifname "br-x" jump peers/);
  nftAccepts(script);
  // One tenant in the cluster and no platform endpoint elsewhere: no forward rules.
  const open = containerFirewallScript(
    oneGuest("herdc_br_x_2", {
      peers: { version: "open", closed: false, nodes: [], tenants: {}, platform: [] },
    }),
  );
  assert.doesNotMatch(open, /chain peers/);
});

test("a platform endpoint at this machine's own address is closed by its port on every address here", () => {
  const script = containerFirewallScript(
    oneGuest("herdc_br_x_3", {
      protect: [{ address: "192.0.2.5", port: 7000 }],
      peers: {
        version: "v1",
        closed: false,
        nodes: [],
        tenants: {},
        platform: ["192.0.2.5:2380", "192.0.2.9:2380"],
      },
      here: ["127.0.0.1", "192.0.2.5", "10.9.0.1"],
    }),
  );
  // etcd on a wildcard answers on the bridge's address too: no `ip daddr` for this machine's endpoints.
  assert.match(script, /ip saddr 10\.9\.0\.2 tcp dport 7000 drop/);
  assert.match(script, /ip saddr 10\.9\.0\.2 tcp dport 2380 drop/);
  assert.doesNotMatch(script, /ip daddr 192\.0\.2\.5/);
  // Another machine's stays matched by its address, on its way out (forward).
  assert.match(script, /chain peers \{\n {4}ip saddr 10\.9\.0\.2 ip daddr 192\.0\.2\.9 tcp dport 2380 drop/);
});

test("the agent's API server on another machine is closed on the way out, with or without peers", () => {
  // An engine that masquerades (docker.io's) routes a container to other machines: the server is one.
  for (const peers of [undefined, { version: "v1", closed: false, nodes: [], tenants: {}, platform: [] }]) {
    const script = containerFirewallScript(
      oneGuest("herdc_br_x_4", {
        protect: [{ address: "192.0.2.1", port: 7070 }],
        ...(peers ? { peers } : {}),
        here: ["127.0.0.1", "192.0.2.5", "10.9.0.1"],
      }),
    );
    assert.match(
      script,
      /chain peers \{\n {4}ip saddr 10\.9\.0\.2 ip daddr 192\.0\.2\.1 tcp dport 7070 drop/,
    );
    nftAccepts(script);
  }
});

test("containers of another app are out of reach; the host's endpoints in their env are not", async (t) => {
  const upstream = createServer((_req, res) => res.end("internal listener\n"));
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  t.after(() => upstream.close());
  const { port: upstreamPort } = upstream.address() as AddressInfo;

  const h = harness(t, (stateRoot) => docker.driver(stateRoot));
  const driver = h.driver();
  assert.equal(driver.isolation().network, "nftables");
  const start = async (id: string, app: string) => {
    const spec = await h.spec(id, `exec "${process.execPath}" probe.cjs`, {
      HERD_APP: app,
      HERD_SERVICE_X_URL: `http://127.0.0.1:${upstreamPort}/`,
    });
    writeFileSync(join(spec.dir, "probe.cjs"), PROBE);
    await driver.start({ ...spec, tenant: "team" });
    await waitFor(() => get(spec.port), `${id} to answer on its published port`, 30_000);
    const info = await docker.engine.api.call<{
      NetworkSettings: { Networks: Record<string, { IPAddress: string; Gateway: string }> };
    }>({ path: `/containers/herd-${hashOf(h.stateRoot)}-${id}/json` });
    return { port: spec.port, ...info.NetworkSettings.Networks.herd };
  };
  const a1 = await start("fa1", "shop");
  const a2 = await start("fa2", "shop");
  const b1 = await start("fb1", "blog");
  const gw = a1.Gateway;
  const from = (c: { port: number }, to: string) => get(c.port, `/connect?to=${to}`);

  assert.equal(await from(a1, `${a2.IPAddress}:${a2.port}`), "open", "same app, on the bridge");
  assert.equal(await from(a1, `${gw}:${a2.port}`), "open", "same app, its published port");
  assert.equal(await from(a1, `${b1.IPAddress}:${b1.port}`), "closed", "another app, on the bridge");
  assert.equal(await from(a1, `${gw}:${b1.port}`), "closed", "another app, its published port on the host");
  assert.equal(await from(b1, `${a1.IPAddress}:${a1.port}`), "closed", "and the other way");
  assert.equal(await from(b1, `${gw}:${a1.port}`), "closed");
  for (const c of [a1, b1])
    assert.equal(await from(c, `${gw}:${upstreamPort}`), "open", "the internal listener");
  // No IPv6 (not even link-local) around the IPv4 rules.
  for (const c of [a1, b1]) assert.equal(await get(c.port, "/ipv6"), "0", "IPv6 addresses in a container");
  // The host (the gateway, probes) still reaches every published port.
  for (const c of [a1, a2, b1]) assert.match(await get(c.port), /^probe /);

  const mine = createHash("sha256").update(h.stateRoot).digest("hex").slice(0, 10);
  assert.match(tables(), new RegExp(`table bridge herdc_\\w+_${mine}`));
  for (const id of ["fa1", "fa2", "fb1"]) await driver.stop(id, 1000);
  assert.doesNotMatch(tables(), new RegExp(`herdc_\\w+_${mine}`), "the tables go with the last container");
});

/** The driver's container names carry this hash of its state root (docker-driver.ts #containerName). */
function hashOf(stateRoot: string): string {
  let h = 0;
  for (const c of stateRoot) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h.toString(16);
}
