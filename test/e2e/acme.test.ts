// ACME end to end against Pebble (Debian's `pebble`): `herd up --acme-directory` orders a
// certificate for a routed host under --acme-domain, Pebble validates HTTP-01 through the
// gateway's HTTP port, and the gateway then serves a certificate that verifies with Pebble's root.
// pebble-challtestsrv is Pebble's DNS here: every name resolves to 127.0.0.1.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ensureDebianPackages } from "../../scripts/ensure-tools.ts";
import { AcmeManager } from "../../src/api/acme.ts";
import { type CaFiles, ensureCa, signServerCertificate } from "../../src/api/local-ca.ts";
import { silentLogger } from "../../src/common/log.ts";
import { SecretStore } from "../../src/secrets/secret-store.ts";
import { MemoryStore } from "../../src/store/memory-store.ts";
import { cleanupHerd, freePort, type Herd, httpsGet, sleep, startHerd, waitFor } from "./harness.ts";

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

/** Pebble's directory CA (a throwaway one), made once for both tests. */
let pebbleCa: CaFiles | undefined;

/** Ports and files of a Pebble whose HTTP-01 checks go to `httpPort`; started by `start()`. */
async function preparePebble(name: string): Promise<{
  directory: string;
  ca: CaFiles;
  start(httpPort: number): Promise<void>;
  root(): Promise<string>;
}> {
  const bins = await ensureDebianPackages({ pebble: "pebble", "pebble-challtestsrv": "pebble" });
  pebbleCa ??= await ensureCa(join(work, "pebble-ca"));
  const ca = pebbleCa;
  const listener = await signServerCertificate(
    ca,
    "localhost",
    { dns: ["localhost"], ips: ["127.0.0.1"] },
    30,
  );
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "cert.pem"), listener.cert);
  writeFileSync(join(dir, "key.pem"), listener.key, { mode: 0o600 });
  const [acmePort, managementPort, dnsPort] = [await freePort(), await freePort(), await freePort()];
  return {
    directory: `https://127.0.0.1:${acmePort}/dir`,
    ca,
    start: async (httpPort) => {
      // Pebble's DNS: every name is 127.0.0.1.
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
        join(dir, "pebble.json"),
        JSON.stringify({
          pebble: {
            listenAddress: `127.0.0.1:${acmePort}`,
            managementListenAddress: `127.0.0.1:${managementPort}`,
            certificate: join(dir, "cert.pem"),
            privateKey: join(dir, "key.pem"),
            // HTTP-01 is checked on this port (port 80 in the real world).
            httpPort,
            tlsPort: await freePort(),
            ocspResponderURL: "",
            externalAccountBindingRequired: false,
          },
        }),
      );
      run(bins.pebble, ["-config", join(dir, "pebble.json"), "-dnsserver", `127.0.0.1:${dnsPort}`], {
        PEBBLE_VA_NOSLEEP: "1",
        PEBBLE_WFE_NONCEREJECT: "0",
      });
    },
    // Pebble's root is made when it starts: its management interface hands it out.
    root: () =>
      waitFor("Pebble's root certificate", async () => {
        const { Agent } = await import("undici");
        const r = await fetch(`https://127.0.0.1:${managementPort}/roots/0`, {
          dispatcher: new Agent({ connect: { ca: ca.cert } }),
        } as RequestInit).catch(() => undefined);
        return r?.ok ? await r.text() : undefined;
      }),
  };
}

test("a routed host under --acme-domain gets a certificate from Pebble through HTTP-01", async () => {
  const pebble = await preparePebble("pebble-herd");
  herd = await startHerd({
    extraArgs: [
      "--acme-directory",
      pebble.directory,
      "--acme-domain",
      "example.test",
      "--acme-email",
      "ops@example.test",
      "--acme-ca",
      pebble.ca.file,
    ],
  });
  const info = JSON.parse(readFileSync(join(herd.dataDir, "server.json"), "utf8")) as {
    gatewayHttpsUrl: string;
  };
  const httpsPort = Number(new URL(info.gatewayHttpsUrl).port);
  await pebble.start(Number(new URL(herd.gatewayUrl).port));

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
  const root = await pebble.root();

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
  await cleanupHerd(herd);
  herd = undefined;
});

test("a certificate is ordered again once 2/3 of its life have passed, and kept in the secret store", async () => {
  const pebble = await preparePebble("pebble-renew");
  const dir = join(work, "renew-data");
  mkdirSync(dir);
  const secrets = await SecretStore.open(new MemoryStore(), dir);
  let now = Date.now();
  const manager = new AcmeManager({
    settings: { directory: pebble.directory, domains: ["example.test"], ca: pebble.ca.cert },
    secrets,
    routedHosts: async () => ["renew.example.test", "other.localhost", "*.example.test"],
    logger: silentLogger,
    now: () => now,
  });
  // What a gateway does for the ACME server: answer the challenge from the manager.
  const answers = http.createServer((req, res) => {
    const key = manager.challenge(req.url?.split("/").pop() ?? "");
    res.writeHead(key ? 200 : 404).end(key ?? "");
  });
  await new Promise<void>((r) => answers.listen(0, "127.0.0.1", r));
  try {
    await pebble.start((answers.address() as AddressInfo).port);
    await pebble.root();
    manager.start();
    const first = await waitFor("the first certificate", () => manager.current("renew.example.test"), 60_000);
    assert.equal(await manager.current("other.localhost"), undefined, "not under --acme-domain");
    // Not due yet: a pass changes nothing.
    manager.kick();
    await sleep(500);
    assert.equal((await manager.current("renew.example.test"))?.cert, first.cert);
    now = first.notBefore + ((first.notAfter - first.notBefore) * 2) / 3 + 1_000;
    manager.kick();
    const second = await waitFor(
      "the renewed certificate",
      async () => {
        const c = await manager.current("renew.example.test");
        return c && c.cert !== first.cert ? c : undefined;
      },
      60_000,
    );
    assert.ok(second.notAfter >= first.notAfter);
    // Another manager on the same store (a restarted server) reads it back.
    const again = new AcmeManager({
      settings: { directory: pebble.directory, domains: ["example.test"] },
      secrets,
      routedHosts: async () => [],
      logger: silentLogger,
    });
    assert.equal((await again.current("renew.example.test"))?.cert, second.cert);
  } finally {
    await manager.close();
    answers.closeAllConnections();
    await new Promise((r) => answers.close(r));
  }
});
