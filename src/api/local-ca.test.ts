// herd's CA and the per-host certificates it signs for gateways: made once, bounded to routed hosts, cached.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { MemoryStore } from "../store/memory-store.ts";
import { HostCertificates, hostRouted } from "./host-certificates.ts";
import { ensureCa, ensureLocalhostCertificate, LocalCa, renewDue } from "./local-ca.ts";

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "herd-local-ca-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("the CA is made once, its key readable by its owner only", async (t) => {
  const dir = await tempDir(t);
  const ca = await ensureCa(dir);
  assert.equal((await stat(join(dir, "ca-key.pem"))).mode & 0o777, 0o600);
  assert.equal((await ensureCa(dir)).cert, ca.cert, "kept, not made again");
  assert.ok(ca.x509.ca, "a CA certificate");
  const localhost = await ensureLocalhostCertificate(dir);
  const x509 = new X509Certificate(readFileSync(localhost.cert, "utf8"));
  assert.ok(x509.verify(ca.x509.publicKey), "the default certificate is signed by the CA");
  assert.equal(x509.subjectAltName, "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
});

test("each host gets its own certificate, signed by the CA, kept until 2/3 of its life", async (t) => {
  const dir = await tempDir(t);
  const ca = await LocalCa.open(dir);
  const caX509 = (await ensureCa(dir)).x509;
  const a = await ca.issue("a.localhost");
  const b = await ca.issue("b.localhost");
  for (const [issued, host] of [
    [a, "a.localhost"],
    [b, "b.localhost"],
  ] as const) {
    const x509 = new X509Certificate(issued.cert);
    assert.equal(x509.subjectAltName, `DNS:${host}`);
    assert.equal(x509.checkHost(host), host);
    assert.ok(x509.verify(caX509.publicKey), `${host} is signed by the CA`);
  }
  assert.equal((await ca.issue("a.localhost")).cert, a.cert, "cached");
  assert.equal(ca.size, 2);
  // Two gateways asking at once get the same certificate.
  const [c1, c2] = await Promise.all([ca.issue("c.localhost"), ca.issue("c.localhost")]);
  assert.equal(c1.cert, c2.cert);
  const late = a.notBefore + ((a.notAfter - a.notBefore) * 2) / 3 + 1;
  assert.ok(renewDue(a, late) && !renewDue(a, late - 2));
  const renewed = await ca.issue("a.localhost", late);
  assert.notEqual(renewed.cert, a.cert, "signed again past 2/3 of its life");
});

test("the cache is bounded: past `max` hosts the oldest is dropped", async (t) => {
  const ca = await LocalCa.open(await tempDir(t), { max: 2 });
  const first = await ca.issue("a.localhost");
  await ca.issue("b.localhost");
  await ca.issue("c.localhost");
  assert.equal(ca.size, 2);
  assert.notEqual((await ca.issue("a.localhost")).cert, first.cert, "a was dropped and signed again");
});

test("only hosts that routes name get a certificate", async (t) => {
  const store = new MemoryStore();
  await store.put("service", "default/shop/web", { spec: { routes: [{ host: "Shop.localhost" }] } });
  await store.put("service", "default/blog/web", { spec: { routes: [{ host: "*.blog.localhost" }] } });
  await store.put("route", "default/api/r", { spec: { host: "api.localhost", service: "web" } });
  const certificates = new HostCertificates({ store, ca: await LocalCa.open(await tempDir(t)) });
  for (const host of ["shop.localhost", "x.blog.localhost", "a.b.blog.localhost", "api.localhost"]) {
    const c = await certificates.forHost(host);
    assert.equal(c?.source, "local", host);
    assert.equal(new X509Certificate(c.cert).checkHost(host), host);
  }
  for (const host of ["evil.localhost", "blog.localhost", "localhost", "shop.localhost.evil.com"]) {
    assert.equal(await certificates.forHost(host), undefined, `${host} is not routed: nothing signed`);
  }
  assert.ok(hostRouted(["*.x.test"], "a.x.test"));
  assert.ok(!hostRouted(["*.x.test"], "x.test"));
  assert.ok(!hostRouted(["*.x.test"], "ax.test"));
});
