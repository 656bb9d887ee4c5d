// HTTPS and active health probes in a real `herd gateway --workers 2` (primary + workers).

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type GatewayChild, spawnGatewayChild } from "./cluster-child.ts";
import {
  request,
  startTestControlPlane,
  startUpstream,
  type TestControlPlane,
  type TestUpstream,
  testInstance,
  testNode,
  testService,
  until,
} from "./testing.ts";
import { type CertificateFiles, ensureDevCertificate } from "./tls.ts";

const TOKEN = "edge-token";
const WEB = { app: "shop", service: "web" };
const INTERVAL_MS = 100;

describe("gateway workers with HTTPS and active probes", () => {
  let dataDir: string;
  let controlPlane: TestControlPlane;
  let devCert: CertificateFiles;
  let gateway: GatewayChild | undefined;
  const upstreams: TestUpstream[] = [];
  const probes = { a: 0, b: 0 };
  let bHealthy = true;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "herd-gateway-edge-"));
    devCert = await ensureDevCertificate(join(dataDir, "tls"));
    controlPlane = await startTestControlPlane(TOKEN);
    for (const name of ["a", "b"] as const) {
      const upstream = await startUpstream((req, res) => {
        if (req.url === "/healthz") {
          probes[name]++;
          res.statusCode = name === "b" && !bHealthy ? 503 : 200;
          res.end();
          return;
        }
        res.end(`${name} ${req.headers["x-forwarded-proto"]}`);
      });
      upstreams.push(upstream);
      controlPlane.put("instance", name, testInstance(name, WEB, "local", upstream.port));
    }
    const service = testService("default", "shop", "web", [{ host: "shop.test" }]);
    service.spec.probe = {
      path: "/healthz",
      intervalMs: INTERVAL_MS,
      timeoutMs: 1000,
      unhealthyAfter: 2,
      healthyAfter: 2,
    };
    controlPlane.put("node", "local", testNode("local", "127.0.0.1"));
    controlPlane.put("service", "default/shop/web", service);
  });

  after(async () => {
    await gateway?.stop(2000);
    await controlPlane.close();
    await Promise.all(upstreams.map((u) => u.close()));
    await rm(dataDir, { recursive: true, force: true });
  });

  test("a certificate file that does not exist stops the start with the flag named", async () => {
    await assert.rejects(
      spawnGatewayChild({
        server: controlPlane.url,
        token: TOKEN,
        port: 0,
        host: "127.0.0.1",
        dataDir: join(dataDir, "bad"),
        workers: 2,
        https: { port: 0, certificates: [{ cert: join(dataDir, "missing.pem"), key: devCert.key }] },
      }),
      /the gateway did not start: --tls-cert .*missing\.pem: no such file/,
    );
  });

  test("serves HTTPS from the workers; the primary alone probes, and its verdict reaches every worker", async () => {
    gateway = await spawnGatewayChild({
      server: controlPlane.url,
      token: TOKEN,
      port: 0,
      host: "127.0.0.1",
      dataDir,
      workers: 2,
      https: { port: 0, certificates: [devCert] },
    });
    const { port, httpsPort } = gateway;
    assert.ok(httpsPort !== undefined && httpsPort > 0, "the HTTPS port is reported");
    assert.equal(gateway.httpsUrl, `https://127.0.0.1:${httpsPort}`);
    const ca = await readFile(devCert.cert, "utf8");
    const secure = await new Promise<string>((resolve, reject) => {
      https
        .get(
          {
            host: "127.0.0.1",
            port: httpsPort,
            servername: "localhost",
            ca,
            headers: { host: "shop.test" },
            agent: false,
          },
          (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => {
              body += chunk;
            });
            res.on("end", () => resolve(body));
          },
        )
        .on("error", reject);
    });
    assert.match(secure, /^[ab] https$/);

    // One prober for the machine: each instance gets about one probe per interval, not one per worker.
    await until("probes to start", async () => probes.a > 0);
    const from = probes.a;
    const start = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const count = probes.a - from;
    const most = Math.floor((performance.now() - start) / INTERVAL_MS) + 2;
    assert.ok(count >= 1, "probed");
    assert.ok(count <= most, `${count} probes in ${most - 2} intervals: more than one prober`);

    // b fails its probes: no worker sends it traffic any more.
    bHealthy = false;
    await until("b out of every worker", async () => {
      const replies = await Promise.all(Array.from({ length: 12 }, () => request(port, "shop.test", "/")));
      return replies.every((r) => r.body === "a http");
    });
    bHealthy = true;
    await until("b back", async () => {
      const replies = await Promise.all(Array.from({ length: 12 }, () => request(port, "shop.test", "/")));
      return replies.some((r) => r.body === "b http");
    });
  });
});
