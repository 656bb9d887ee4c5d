// HTTPS termination through a real proxy, real TLS handshakes and a real upstream.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { generate } from "selfsigned";
import { isCode } from "../common/errors.ts";
import { silentLogger } from "../common/log.ts";
import { GatewayProxy } from "./proxy.ts";
import { buildRouteTable } from "./route-table.ts";
import { request, startUpstream, type TestUpstream, testInstance, testNode, testService } from "./testing.ts";
import { type CertificateFiles, ensureDevCertificate, loadCertificates, watchCertificates } from "./tls.ts";

/** A self-signed certificate for `names`, written to `dir/<file>-cert.pem` and `-key.pem`. */
async function writeCertificate(
  dir: string,
  file: string,
  names: string[],
): Promise<CertificateFiles & { pem: string }> {
  const pems = await generate([{ name: "commonName", value: names[0] }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [{ name: "subjectAltName", altNames: names.map((value) => ({ type: 2 as const, value })) }],
  });
  const files = { cert: join(dir, `${file}-cert.pem`), key: join(dir, `${file}-key.pem`) };
  await writeFile(files.cert, pems.cert);
  await writeFile(files.key, pems.private);
  return { ...files, pem: pems.cert };
}

interface TlsReply {
  status: number;
  body: string;
  /** The certificate the server presented. */
  peer: X509Certificate;
  alpn: string | false | null;
}

/** One HTTPS request to 127.0.0.1:port, sending `servername` by SNI (none when undefined). */
function httpsRequest(
  port: number,
  host: string,
  options: { servername?: string; ca?: string | string[]; path?: string; verify?: boolean },
): Promise<TlsReply> {
  return new Promise((resolve, reject) => {
    const requestOptions: https.RequestOptions & { ALPNProtocols: string[] } = {
      host: "127.0.0.1",
      port,
      path: options.path ?? "/",
      headers: { host },
      // "" sends no SNI at all.
      servername: options.servername ?? "",
      ca: options.ca,
      rejectUnauthorized: options.verify ?? true,
      // Offered as browsers do; the gateway must choose HTTP/1.1.
      ALPNProtocols: ["h2", "http/1.1"],
      agent: false,
    };
    const req = https.request(requestOptions, (res) => {
      const socket = res.socket as TLSSocket;
      const peer = new X509Certificate(socket.getPeerCertificate().raw);
      const alpn = socket.alpnProtocol;
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, peer, alpn }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("HTTPS termination", () => {
  let dir: string;
  let upstream: TestUpstream;
  let proxy: GatewayProxy;
  let httpPort: number;
  let httpsPort: number;
  let certA: CertificateFiles & { pem: string };
  let certB: CertificateFiles & { pem: string };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "herd-tls-"));
    certA = await writeCertificate(dir, "a", ["a.test", "*.a.test"]);
    certB = await writeCertificate(dir, "b", ["b.test"]);
    upstream = await startUpstream((req, res) =>
      res.end(JSON.stringify({ proto: req.headers["x-forwarded-proto"], host: req.headers.host })),
    );
    proxy = new GatewayProxy({ logger: silentLogger });
    const service = testService("default", "shop", "web", [{ host: "*.a.test" }, { host: "b.test" }]);
    proxy.table = buildRouteTable(
      {
        services: [service],
        instances: [testInstance("w1", { app: "shop", service: "web" }, "local", upstream.port)],
        nodes: [testNode("local", "127.0.0.1")],
      },
      1,
    );
    httpPort = await proxy.listen(0, "127.0.0.1");
    httpsPort = await proxy.listenHttps(0, "127.0.0.1", loadCertificates([certA, certB]));
  });

  after(async () => {
    await proxy?.close();
    await upstream?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("proxies over TLS with X-Forwarded-Proto https, and http stays http", async () => {
    const secure = await httpsRequest(httpsPort, "shop.a.test", { servername: "shop.a.test", ca: certA.pem });
    assert.equal(secure.status, 200, secure.body);
    assert.deepEqual(JSON.parse(secure.body), { proto: "https", host: "shop.a.test" });
    assert.equal(secure.alpn, "http/1.1");
    const plain = await request(httpPort, "shop.a.test", "/");
    assert.deepEqual(JSON.parse(plain.body), { proto: "http", host: "shop.a.test" });
  });

  test("picks the certificate by SNI, wildcards included; no SNI gets the first one", async () => {
    const b = await httpsRequest(httpsPort, "b.test", { servername: "b.test", ca: certB.pem });
    assert.equal(b.status, 200);
    assert.equal(b.peer.subjectAltName, "DNS:b.test");
    const wild = await httpsRequest(httpsPort, "x.a.test", { servername: "X.A.test", ca: certA.pem });
    assert.equal(wild.peer.subjectAltName, "DNS:a.test, DNS:*.a.test");
    // The wrong CA for the name's certificate fails the handshake: the pick really differs.
    await assert.rejects(httpsRequest(httpsPort, "b.test", { servername: "b.test", ca: certA.pem }));
    const none = await httpsRequest(httpsPort, "b.test", { verify: false });
    assert.equal(
      none.peer.subjectAltName,
      "DNS:a.test, DNS:*.a.test",
      "no SNI: the default (first) certificate",
    );
    assert.equal(none.status, 200, "routing still goes by the Host header");
  });

  test("reloads certificates when their files change", async () => {
    const stop = watchCertificates([certA, certB], silentLogger, (store) => proxy.useCertificates(store), 50);
    try {
      const fresh = await writeCertificate(dir, "b-next", ["b.test"]);
      await writeFile(certB.cert, await readFile(fresh.cert));
      await writeFile(certB.key, await readFile(fresh.key));
      const wanted = new X509Certificate(fresh.pem).fingerprint256;
      const deadline = Date.now() + 5000;
      let seen = "";
      while (seen !== wanted && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        const reply = await httpsRequest(httpsPort, "b.test", { servername: "b.test", verify: false });
        seen = reply.peer.fingerprint256;
      }
      assert.equal(seen, wanted, "the new certificate is served");
    } finally {
      stop();
    }
  });

  test("a missing or mismatched file is an error naming the flag and the file", async () => {
    assert.throws(
      () => loadCertificates([{ cert: join(dir, "nope.pem"), key: certA.key }]),
      (err: Error) =>
        isCode(err, "invalid") && err.message === `--tls-cert ${join(dir, "nope.pem")}: no such file`,
    );
    assert.throws(
      () => loadCertificates([{ cert: certA.cert, key: join(dir, "nokey.pem") }]),
      /--tls-key .*nokey\.pem: no such file/,
    );
    assert.throws(
      () => loadCertificates([{ cert: certA.cert, key: certB.key }]),
      /--tls-key .*b-key\.pem is not the key of --tls-cert .*a-cert\.pem/,
    );
    assert.throws(
      () => loadCertificates([{ cert: certA.key, key: certA.key }]),
      /--tls-cert .*a-key\.pem is not a PEM certificate/,
    );
  });
});

test("the development certificate is made once, for localhost and the loopback addresses", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "herd-devcert-"));
  const upstream = await startUpstream((req, res) => res.end(String(req.headers["x-forwarded-proto"])));
  const proxy = new GatewayProxy({ logger: silentLogger });
  t.after(async () => {
    await proxy.close();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });
  const files = await ensureDevCertificate(join(dir, "tls"));
  assert.equal((await stat(files.key)).mode & 0o777, 0o600, "the key is readable by its owner only");
  const pem = await readFile(files.cert, "utf8");
  const x509 = new X509Certificate(pem);
  assert.equal(x509.subjectAltName, "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
  const again = await ensureDevCertificate(join(dir, "tls"));
  assert.deepEqual(again, files);
  assert.equal(await readFile(files.cert, "utf8"), pem, "kept, not made again");

  proxy.table = buildRouteTable(
    {
      services: [testService("default", "hello", "web", [{ host: "localhost" }])],
      instances: [testInstance("h1", { app: "hello", service: "web" }, "local", upstream.port)],
      nodes: [testNode("local", "127.0.0.1")],
    },
    1,
  );
  const port = await proxy.listenHttps(0, "127.0.0.1", loadCertificates([files]));
  for (const name of ["localhost"]) {
    const reply = await httpsRequest(port, name, { servername: name, ca: pem });
    assert.equal(reply.status, 200);
    assert.equal(reply.body, "https");
  }
});
