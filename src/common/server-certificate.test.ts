import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { test } from "node:test";
import { generateCertificate, signServerCertificate } from "./server-certificate.ts";

test("a certificate made in the signer process: signed by the CA, for the names and days asked", async () => {
  const pems = await generateCertificate([{ name: "commonName", value: "test CA" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, critical: true },
    ],
  });
  const ca = { cert: pems.cert, key: pems.private };
  const issued = await signServerCertificate(ca, "shop", { dns: ["shop.localhost"], ips: ["127.0.0.1"] }, 30);
  const cert = new X509Certificate(issued.cert);
  assert.ok(cert.checkIssued(new X509Certificate(ca.cert)));
  assert.ok(cert.verify(new X509Certificate(ca.cert).publicKey));
  assert.equal(cert.subjectAltName, "DNS:shop.localhost, IP Address:127.0.0.1");
  // The dates crossed the process boundary as dates: 30 days from an hour ago.
  assert.equal(Date.parse(cert.validTo), issued.notAfter - (issued.notAfter % 1000));
  assert.equal(Math.round((issued.notAfter - issued.notBefore) / 86_400_000), 30);
  assert.match(issued.key, /BEGIN PRIVATE KEY/);
});

test("a signer that fails says so, with its error", async () => {
  await assert.rejects(
    signServerCertificate(
      { cert: "not a certificate", key: "not a key" },
      "x",
      { dns: ["x.test"], ips: [] },
      1,
    ),
    /making a certificate failed \(exit 1\): .+/s,
  );
});
