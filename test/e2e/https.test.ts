// HTTPS under `herd up`: two apps, each served with its own certificate signed by herd's CA,
// verified by a client that trusts only the CA file; a host no route names gets no certificate of its own.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  cleanupHerd,
  gatewayRequest,
  gatewaysInSync,
  type Herd,
  httpsGet,
  startHerd,
  waitFor,
} from "./harness.ts";

/** An app answering its own name on `<name>.localhost`. */
function writeApp(root: string, name: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, "server.js"),
    `require("node:http").createServer((req, res) => res.end("${name} " + req.headers["x-forwarded-proto"])).listen(process.env.PORT);\n`,
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    `app: ${name}\nservices:\n  web:\n    command: node server.js\n    instances: 1\n    resources: { cpu: 0.1, memory: 64Mi }\n    routes: [{ host: ${name}.localhost }]\n`,
  );
  return dir;
}

let herd: Herd | undefined;
const apps = mkdtempSync(join(tmpdir(), "herd-e2e-https-apps-"));
after(async () => {
  await cleanupHerd(herd);
  rmSync(apps, { recursive: true, force: true });
});

test("every app's host verifies with the one CA file, on every gateway worker; --public serves every interface", async (t) => {
  herd = await startHerd({ extraArgs: ["--gateway-workers", "2", "--public"] });
  for (const name of ["shop", "blog"]) {
    const r = await herd.cli(["deploy", writeApp(apps, name)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Every worker has the app's endpoint (not what is tested here): plain HTTP answers a few times.
    for (let i = 0; i < 4; i++) {
      await waitFor(
        `${name} over HTTP`,
        async () => (await herd?.request(`${name}.localhost`))?.status === 200,
      );
    }
  }
  // Every worker has both apps' routes: fresh connections below may land on either.
  await gatewaysInSync(herd);
  const info = JSON.parse(readFileSync(join(herd.dataDir, "server.json"), "utf8")) as {
    gatewayHttpsUrl: string;
  };
  const port = Number(new URL(info.gatewayHttpsUrl).port);
  const ca = readFileSync(join(herd.dataDir, "tls", "ca-cert.pem"), "utf8");
  // Fresh connections land on either worker: each must get (and cache) its own certificates.
  for (let i = 0; i < 6; i++) {
    for (const name of ["shop", "blog"]) {
      const r = await httpsGet(port, `${name}.localhost`, ca);
      assert.equal(r.status, 200);
      assert.equal(r.body, `${name} https`);
      assert.equal(r.subjectAltName, `DNS:${name}.localhost`);
    }
  }
  // No route names it: the default certificate (localhost), which does not verify for this name.
  await assert.rejects(httpsGet(port, "nope.localhost", ca), /altnames|Hostname\/IP does not match/i);
  assert.ok(!herd.output().includes("no certificate for a routed host"), "every fetch succeeded");
  // --public: the gateway answers on this machine's other addresses too; the API stays on loopback.
  assert.match(herd.url, /^http:\/\/127\.0\.0\.1:/);
  const external = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
  await t.test(
    "--public: the gateway answers on this machine's other address too",
    { skip: external === undefined && "no non-loopback IPv4 address on this machine" },
    async () => {
      assert.equal((await httpsGet(port, "shop.localhost", ca, external)).body, "shop https");
      assert.equal(
        (await gatewayRequest(`http://${external}:${new URL(herd!.gatewayUrl).port}`, "blog.localhost")).body,
        "blog http",
      );
    },
  );
});
