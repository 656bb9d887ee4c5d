// Routed hosts' certificates on demand: real TLS handshakes through a real proxy, certificates
// signed by herd's CA behind a stand-in control plane that counts what it is asked.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { ensureLocalhostCertificate, LocalCa } from "../api/local-ca.ts";
import { silentLogger } from "../common/log.ts";
import { AcmeChallenges } from "./acme-challenge.ts";
import { OnDemandCertificates } from "./host-certificates.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, type TestUpstream, testInstance, testNode, testService } from "./testing.ts";
import { loadCertificates } from "./tls.ts";

const TOKEN = "herd_gw_test";
let dir: string;
let ca: string;
let upstream: TestUpstream;
let proxy: GatewayProxy;
let port: number;
let httpPort: number;
let controlPlane: http.Server;
let controlUp = true;
/** Certificate requests the control plane got, by host. */
const asked = new Map<string, number>();
/** The clock of the gateway's cache. */
let now = Date.now();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "herd-host-certs-"));
  const localCa = await LocalCa.open(dir);
  const files = await ensureLocalhostCertificate(dir);
  ca = readFileSync(files.ca, "utf8");
  controlPlane = http.createServer((req, res) => {
    if (req.url?.startsWith("/api/v1/gateways/acme-challenges/")) {
      const known = req.url.endsWith("/tok-1") && req.headers.authorization === `Bearer ${TOKEN}`;
      res.writeHead(known ? 200 : 404, { "content-type": "application/json" });
      res.end(known ? JSON.stringify({ keyAuthorization: "tok-1.thumbprint" }) : "{}");
      return;
    }
    const host = decodeURIComponent(req.url?.split("/").pop() ?? "");
    asked.set(host, (asked.get(host) ?? 0) + 1);
    if (!controlUp || req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(503).end();
      return;
    }
    void localCa.issue(host).then((c) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ host, source: "local", ...c, refreshAt: Date.now() + 3_600_000 }));
    });
  });
  await new Promise<void>((r) => controlPlane.listen(0, "127.0.0.1", r));
  const server = `http://127.0.0.1:${(controlPlane.address() as AddressInfo).port}`;
  upstream = await startUpstream((req, res) => res.end(`hi ${req.headers.host}`));
  proxy = new GatewayProxy({ logger: silentLogger });
  proxy.table = buildRouteTable(
    {
      services: [
        testService("default", "shop", "web", [{ host: "shop.localhost" }, { host: "*.blog.localhost" }]),
      ],
      instances: [testInstance("s1", { app: "shop", service: "web" }, "local", upstream.port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const onDemand = new OnDemandCertificates({
    server,
    token: TOKEN,
    logger: silentLogger,
    routed: (name) => proxy.table.servesHost(name),
    now: () => now,
  });
  port = await proxy.listenHttps(0, "127.0.0.1", loadCertificates([files], onDemand));
  proxy.acmeChallenges = new AcmeChallenges({ server, token: TOKEN, logger: silentLogger });
  httpPort = await proxy.listen(0, "127.0.0.1");
});

after(async () => {
  await proxy.close();
  await upstream.close();
  controlPlane.closeAllConnections();
  await new Promise((r) => controlPlane.close(r));
  await rm(dir, { recursive: true, force: true });
});

/** GET / with SNI `name`; resolves with the status and the presented certificate's names. */
function get(name: string, verify = true): Promise<{ status: number; names: string; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        servername: name,
        headers: { host: name },
        ca,
        rejectUnauthorized: verify,
        agent: false,
      },
      (res) => {
        const peer = (res.socket as TLSSocket).getPeerCertificate();
        res.resume();
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            names: peer.subjectaltname ?? "",
            serial: peer.serialNumber,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

test("each routed host gets its own certificate, verified by the CA alone, fetched once", async () => {
  for (const name of ["shop.localhost", "a.blog.localhost", "shop.localhost", "a.blog.localhost"]) {
    const r = await get(name);
    assert.equal(r.status, 200);
    assert.equal(r.names, `DNS:${name}`);
  }
  assert.equal(asked.get("shop.localhost"), 1, "cached after the first handshake");
  assert.equal(asked.get("a.blog.localhost"), 1);
  // Handshakes at the same moment wait for the one fetch.
  const [x, y, z] = await Promise.all([
    get("b.blog.localhost"),
    get("b.blog.localhost"),
    get("b.blog.localhost"),
  ]);
  assert.equal(asked.get("b.blog.localhost"), 1);
  assert.equal(new Set([x.serial, y.serial, z.serial]).size, 1);
});

test("a host no route names is never asked for: the default certificate serves it", async () => {
  const r = await get("evil.localhost", false);
  assert.equal(r.names, "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
  await assert.rejects(get("evil.localhost"), /altnames/);
  assert.equal(asked.get("evil.localhost"), undefined);
  assert.equal(asked.get("blog.localhost"), undefined);
});

test("past its refresh time a certificate keeps serving while the next one is fetched; without the control plane it stays", async () => {
  const before = await get("shop.localhost");
  controlUp = false;
  now += 2 * 3_600_000;
  const during = await get("shop.localhost");
  assert.equal(during.serial, before.serial, "the held certificate serves at once");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(asked.get("shop.localhost"), 2, "one refresh asked for");
  assert.equal((await get("shop.localhost")).serial, before.serial, "the control plane is away: kept");
  controlUp = true;
  now += 20_000; // past the retry wait
  await get("shop.localhost");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(asked.get("shop.localhost"), 3);
});

test("ACME HTTP-01 challenges are answered from the control plane, before any route", async () => {
  const hits = upstream.hits;
  const good = await request(httpPort, "shop.localhost", "/.well-known/acme-challenge/tok-1");
  assert.equal(good.status, 200);
  assert.equal(good.body, "tok-1.thumbprint");
  const unknown = await request(httpPort, "shop.localhost", "/.well-known/acme-challenge/nope");
  assert.equal(unknown.status, 404);
  const bad = await request(httpPort, "shop.localhost", "/.well-known/acme-challenge/../x");
  assert.notEqual(bad.status, 200);
  assert.equal(upstream.hits, hits, "the app never saw them");
  assert.equal(
    (await request(httpPort, "shop.localhost", "/.well-known/other")).status,
    200,
    "other paths route",
  );
});
