/**
 * Certificates for a throwaway etcd cluster with TLS (etcd-cluster.ts `tls`):
 * a CA, one server certificate for localhost that every member serves, and a
 * client certificate for herd, made with the distribution's `openssl` in
 * `dir`. For tests only: keys are unencrypted and live one day.
 */

import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureDebianPackages } from "../common/debian-packages.ts";

/** PEM files of a test CA and the certificates it signed. */
export interface TestTlsFiles {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export async function makeTestTls(dir: string): Promise<TestTlsFiles> {
  const { openssl } = await ensureDebianPackages({ openssl: "openssl" });
  const run = (args: string[]) => execFileSync(openssl, args, { stdio: ["ignore", "ignore", "pipe"] });
  const f = (name: string) => join(dir, name);
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run([
    "req",
    "-x509",
    ...newKey,
    "-keyout",
    f("ca-key.pem"),
    "-out",
    f("ca.pem"),
    "-days",
    "1",
    "-subj",
    "/CN=herd test etcd CA",
  ]);
  const sign = (name: string, cn: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext);
    run(["req", ...newKey, "-keyout", f(`${name}-key.pem`), "-out", f(`${name}.csr`), "-subj", `/CN=${cn}`]);
    run([
      "x509",
      "-req",
      "-in",
      f(`${name}.csr`),
      "-CA",
      f("ca.pem"),
      "-CAkey",
      f("ca-key.pem"),
      "-CAcreateserial",
      "-out",
      f(`${name}.pem`),
      "-days",
      "1",
      "-extfile",
      f(`${name}.ext`),
    ]);
  };
  sign(
    "server",
    "etcd",
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  sign("client", "herd", "extendedKeyUsage=clientAuth\n");
  return {
    ca: f("ca.pem"),
    serverCert: f("server.pem"),
    serverKey: f("server-key.pem"),
    clientCert: f("client.pem"),
    clientKey: f("client-key.pem"),
  };
}
