// ACME end to end against Pebble (Debian's `pebble`): `herd up --acme-directory` orders a
// certificate for a routed host under --acme-domain, Pebble validates HTTP-01 through the
// gateway's HTTP port, and the gateway then serves a certificate that verifies with Pebble's root.
// pebble-challtestsrv is Pebble's DNS here: every name resolves to 127.0.0.1.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { TLSSocket } from "node:tls";
import { ensureDebianPackages } from "../../scripts/ensure-tools.ts";
import { ensureCa, signServerCertificate } from "../../src/api/local-ca.ts";
import { cleanupHerd, freePort, type Herd, sleep, startHerd, waitFor } from "./harness.ts";

const HOST = "shop.example.test";
const work = mkdtempSync(join(tmpdir(), "herd-e2e-acme-"));
const children: ChildProcess[] = [];
let herd: Herd | undefined;
let output = "";

after(async () => {
  await cleanupHerd(herd);
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    }
  }
  rmSync(work, { recursive: true, force: true });
});

function run(bin: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  children.push(child);
  return child;
}

/** GET over HTTPS with SNI `host`, trusting only `ca`; resolves with the presented certificate's issuer. */
function httpsGet(
  port: number,
  host: string,
  ca: string,
): Promise<{ status: number; body: string; issuer: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        path: "/",
        servername: host,
        headers: { host },
        ca,
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        const issuer = String((res.socket as TLSSocket).getPeerCertificate().issuer?.CN ?? "");
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, issuer }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

test("a routed host under --acme-domain gets a certificate from Pebble through HTTP-01", async () => {
  const bins = await ensureDebianPackages({ pebble: "pebble", "pebble-challtestsrv": "pebble" });
  // Pebble's own HTTPS (the directory) with a certificate from a throwaway CA the server is told to trust.
  const pebbleCa = await ensureCa(join(work, "pebble-ca"));
  const listener = await signServerCertificate(
    pebbleCa,
    "localhost",
    { dns: ["localhost"], ips: ["127.0.0.1"] },
    30,
  );
  writeFileSync(join(work, "pebble-cert.pem"), listener.cert);
  writeFileSync(join(work, "pebble-key.pem"), listener.key, { mode: 0o600 });
  const [acmePort, managementPort, dnsPort] = [await freePort(), await freePort(), await freePort()];

  herd = await startHerd({
    extraArgs: [
      "--acme-directory",
      `https://127.0.0.1:${acmePort}/dir`,
      "--acme-domain",
      "example.test",
      "--acme-email",
      "ops@example.test",
      "--acme-ca",
      pebbleCa.file,
    ],
  });
  const gatewayPort = Number(new URL(herd.gatewayUrl).port);
  const info = JSON.parse(readFileSync(join(herd.dataDir, "server.json"), "utf8")) as {
    gatewayHttpsUrl: string;
  };
  const httpsPort = Number(new URL(info.gatewayHttpsUrl).port);

  run(bins["pebble-challtestsrv"], [
    "-dns01",
    `127.0.0.1:${dnsPort}`,
    "-http01",
    "",
    "-https01",
    "",
    "-tlsalpn01",
    "",
    "-management",
    `127.0.0.1:${await freePort()}`,
    "-defaultIPv4",
    "127.0.0.1",
    "-defaultIPv6",
    "",
  ]);
  writeFileSync(
    join(work, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: join(work, "pebble-cert.pem"),
        privateKey: join(work, "pebble-key.pem"),
        // HTTP-01 is checked on the gateway's HTTP port (port 80 in the real world).
        httpPort: gatewayPort,
        tlsPort: await freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  run(bins.pebble, ["-config", join(work, "pebble.json"), "-dnsserver", `127.0.0.1:${dnsPort}`], {
    PEBBLE_VA_NOSLEEP: "1",
    PEBBLE_WFE_NONCEREJECT: "0",
  });

  const app = join(work, "shop");
  mkdirSync(app);
  writeFileSync(
    join(app, "server.js"),
    `require("node:http").createServer((req, res) => res.end("shop " + req.headers["x-forwarded-proto"])).listen(process.env.PORT);\n`,
  );
  writeFileSync(
    join(app, "herd.yaml"),
    `app: shop\nservices:\n  web:\n    command: node server.js\n    instances: 1\n    resources: { cpu: 0.1, memory: 64Mi }\n    routes: [{ host: ${HOST} }]\n`,
  );
  const deployed = await herd.cli(["deploy", app]);
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);

  // Pebble's root is made when it starts: ask its management interface.
  const root = await waitFor("Pebble's root certificate", async () => {
    const r = await fetch(`https://127.0.0.1:${managementPort}/roots/0`, {
      dispatcher: new (await import("undici")).Agent({ connect: { ca: pebbleCa.cert } }),
    } as RequestInit).catch(() => undefined);
    return r?.ok ? await r.text() : undefined;
  });

  // The first handshake gets herd's CA certificate and starts the order; the gateway asks again
  // every few seconds until the ACME one is there.
  const herdCa = readFileSync(join(herd.dataDir, "tls", "ca-cert.pem"), "utf8");
  const first = await httpsGet(httpsPort, HOST, herdCa).catch(() => undefined);
  if (first) assert.match(first.issuer, /^herd CA/);
  const served = await waitFor(
    "the ACME certificate served",
    async () => httpsGet(httpsPort, HOST, root).catch(() => sleep(500).then(() => undefined)),
    90_000,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}\n--- herd ---\n${herd?.output()}\n--- pebble ---\n${output}`);
  });
  assert.equal(served.status, 200);
  assert.equal(served.body, "shop https");
  assert.match(served.issuer, /Pebble/);
  // Stored by the control plane: what every gateway gets.
  const stored = await herd.api<{ source: string; cert: string }>("GET", `/gateways/certificates/${HOST}`);
  assert.equal(stored.status, 200);
  assert.equal(stored.body.source, "acme");
  assert.match(output, new RegExp(`${HOST}`), "Pebble validated the host");
});
