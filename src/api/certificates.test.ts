// GET /gateways/certificates/:host and /gateways/acme-challenges/:token through a real control plane.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { apiCall } from "./testing.ts";

let dir: string;
let server: RunningServer;
let gatewayToken: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "herd-api-certs-"));
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  await server.store.put("service", "default/shop/web", { spec: { routes: [{ host: "shop.localhost" }] } });
  const created = await apiCall(server, "POST", "/tokens", { name: "gw", kind: "gateway" });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  gatewayToken = created.body.token;
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a gateway gets a routed host's certificate, signed by the data dir's CA", async () => {
  const r = await apiCall(server, "GET", "/gateways/certificates/Shop.localhost.", undefined, {
    token: gatewayToken,
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.host, "shop.localhost");
  assert.equal(r.body.source, "local");
  const x509 = new X509Certificate(r.body.cert);
  const ca = new X509Certificate(readFileSync(join(dir, "tls", "ca-cert.pem")));
  assert.ok(x509.verify(ca.publicKey));
  assert.equal(x509.subjectAltName, "DNS:shop.localhost");
  assert.ok(r.body.refreshAt > Date.now() && r.body.notAfter > r.body.refreshAt);
  const again = await apiCall(server, "GET", "/gateways/certificates/shop.localhost", undefined, {
    token: gatewayToken,
  });
  assert.equal(again.body.cert, r.body.cert, "signed once, for every gateway");
});

test("a host no route names is a 404, a name that is no DNS name a 400 naming the field", async () => {
  const r = await apiCall(server, "GET", "/gateways/certificates/evil.localhost", undefined, {
    token: gatewayToken,
  });
  assert.equal(r.status, 404);
  assert.match(r.body.message, /no route serves host evil\.localhost/);
  const bad = await apiCall(server, "GET", "/gateways/certificates/a%20b", undefined, {
    token: gatewayToken,
  });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /host/);
});

test("no ACME challenge is known without an order in progress", async () => {
  const r = await apiCall(server, "GET", "/gateways/acme-challenges/abc-123", undefined, {
    token: gatewayToken,
  });
  assert.equal(r.status, 404);
});
