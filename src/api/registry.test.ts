// The registry's control-plane routes over a real socket: an agent reports the
// image (by digest) a release's service runs; /registry/kept lists what every
// kept release runs (reported digests, `image:` by digest or by tag) and
// drops a release's images with the release; agents only, input checked.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { type Release, releaseKey } from "../model/objects.ts";
import { createTestTokens, type TestTokens } from "./principals-testing.ts";
import { apiCall } from "./testing.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-registry-api-"));
let server: RunningServer;
let tokens: TestTokens;
const D1 = `sha256:${"1".repeat(64)}`;
const D2 = `sha256:${"2".repeat(64)}`;
const D3 = `sha256:${"3".repeat(64)}`;

const release = (version: number, services: Release["services"]): Release => ({
  tenant: "a",
  app: "shop",
  version,
  createdAt: new Date().toISOString(),
  description: "test",
  source: "s",
  slug: "s",
  services,
});

before(async () => {
  server = await startServer({ dataDir: dir, port: 0, logger: silentLogger });
  tokens = await createTestTokens(server.url, server.adminToken);
  const web = { command: "", runtime: "docker" } as unknown as Release["services"][string];
  const cache = { command: "", image: `reg:5000/cache@${D3}` } as unknown as Release["services"][string];
  const tagged = { command: "", image: "reg:5000/team/db:1.2" } as unknown as Release["services"][string];
  await server.store.put("release", releaseKey("a", "shop", 1), release(1, { web, cache }));
  await server.store.put("release", releaseKey("a", "shop", 2), release(2, { web, db: tagged }));
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("agents report what releases run; kept lists it while the release is kept", async () => {
  const as = { token: tokens.agentN1 };
  const report = (version: number, image: string, service = "web") =>
    apiCall(
      server,
      "POST",
      "/registry/images",
      { tenant: "a", app: "shop", release: version, service, image },
      as,
    );
  assert.equal((await report(1, `reg:5000/herd-build@${D1}`)).status, 200);
  assert.equal((await report(2, `reg:5000/herd-build@${D2}`)).status, 200);
  const again = await report(2, `reg:5000/herd-build@${D2}`);
  assert.equal(again.body.recorded, false, "the same report twice writes once");
  const r2 = await server.store.get<Release>("release", releaseKey("a", "shop", 2));
  assert.deepEqual(r2?.value.images, { web: `reg:5000/herd-build@${D2}` });

  const kept = await apiCall(server, "GET", "/registry/kept", undefined, as);
  assert.equal(kept.status, 200, JSON.stringify(kept.body));
  assert.deepEqual(kept.body, { digests: [D1, D2, D3], images: ["reg:5000/team/db:1.2"] });

  // Release 1 goes (its app's history trimmed or destroyed): its build and image are no longer kept.
  await server.store.delete("release", releaseKey("a", "shop", 1));
  const after1 = await apiCall(server, "GET", "/registry/kept", undefined, as);
  assert.deepEqual(after1.body.digests, [D2]);

  // Bad input names the field; an unknown release or service is 404; users may not report.
  const bad = await report(2, "reg:5000/herd-build:latest");
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /image/);
  assert.equal((await report(9, `reg:5000/herd-build@${D1}`)).status, 404);
  assert.equal((await report(2, `reg:5000/herd-build@${D1}`, "nope")).status, 404);
  const user = await apiCall(server, "GET", "/registry/kept", undefined, { token: tokens.ownerA });
  assert.equal(user.status, 403);
});

test("agents get the registries' credential and CA; the serving agent a certificate for its address", async () => {
  const as = { token: tokens.agentN1 };
  const plain = await apiCall(server, "POST", "/registry/credentials", {}, as);
  assert.equal(plain.status, 200, JSON.stringify(plain.body));
  assert.equal(plain.body.username, "herd");
  assert.ok(plain.body.password.length >= 24);
  assert.match(plain.body.ca, /BEGIN CERTIFICATE/);
  assert.equal(plain.body.certificate, undefined);
  // Kept through the secret store: the same password every time.
  const serving = await apiCall(server, "POST", "/registry/credentials", { serve: "192.0.2.10:5000" }, as);
  assert.equal(serving.body.password, plain.body.password);
  assert.equal(
    await server.secrets.value("_herd", "_registry", "password"),
    plain.body.password,
    "the password is a secret of the store",
  );
  const cert = new X509Certificate(serving.body.certificate.cert);
  assert.equal(cert.subjectAltName, "IP Address:192.0.2.10");
  assert.ok(cert.verify(new X509Certificate(serving.body.ca).publicKey), "signed by the registry CA");
  // The registry CA is not the API's and gateways' CA: its certificates pass for nothing else.
  assert.notEqual(serving.body.ca, readFileSync(join(dir, "tls", "ca-cert.pem"), "utf8"));

  const bad = await apiCall(server, "POST", "/registry/credentials", { serve: "no port" }, as);
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(bad.body), /serve/);
  const user = await apiCall(server, "POST", "/registry/credentials", {}, { token: tokens.ownerA });
  assert.equal(user.status, 403);
});
