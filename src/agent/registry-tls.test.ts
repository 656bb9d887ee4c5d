/**
 * A registry off loopback with real processes: the agent's container setup
 * (startContainers) serves it on this machine's non-loopback address with
 * TLS (a certificate of herd's registry CA, as POST /registry/credentials
 * gives it) and basic auth (htpasswd, Debian apache2-utils); its own engine
 * (a private dockerd) trusts the CA through certs.d and pushes a build and
 * pulls it back with the credential. Without TLS, without the credential or
 * with a wrong one the registry refuses. Everything it starts is stopped and
 * removed at the end (the engine, the registry, the certs.d entry).
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureCa, signServerCertificate } from "../api/local-ca.ts";
import { apiRequest } from "../common/api-request.ts";
import { ensureDebianPackages } from "../common/debian-packages.ts";
import {
  type Containers,
  DOCKER_CERTS_DIR,
  type RegistryCredentials,
  startContainers,
} from "./containers.ts";
import { stopDockerd } from "./docker-daemon.ts";
import { BUILD_REPO } from "./docker-images.ts";
import { freePort, get, harness, waitFor } from "./driver.case.test.ts";
import { manifestDigest, registryRequest, stopRegistry } from "./registry.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-registry-tls-"));
const engineDir = join(dir, "dockerd");
const dataDir = join(dir, "agent");
/** This machine's first IPv4 address off loopback and off docker bridges. */
const host = Object.entries(networkInterfaces())
  .filter(([name]) => !name.startsWith("br-") && !name.startsWith("docker") && !name.startsWith("veth"))
  .flatMap(([, list]) => list ?? [])
  .find((a) => a.family === "IPv4" && !a.internal)?.address;
let address = "";
let containers: Containers | undefined;

before(async () => {
  await ensureDebianPackages({
    dockerd: "docker.io",
    busybox: "busybox-static",
    "docker-registry": "docker-registry",
    htpasswd: "apache2-utils",
  });
});

after(async () => {
  try {
    containers?.close();
    await Promise.all([stopDockerd(engineDir), stopRegistry(join(dataDir, "registry"))]);
  } finally {
    if (address) rmSync(join(DOCKER_CERTS_DIR, address), { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("off loopback the registry serves TLS and basic auth; the engine pushes and pulls with the credential", {
  skip: host ? false : "this machine has no IPv4 address off loopback",
}, async (t) => {
  address = `${host}:${await freePort()}`;
  const ca = await ensureCa(join(dir, "ca"));
  const asked: (string | undefined)[] = [];
  // As the control plane: one certificate until it is renewed.
  const sign = () => signServerCertificate(ca, host as string, { dns: [], ips: [host as string] }, 30);
  let certificate = await sign();
  const credentials = async (serve?: string): Promise<RegistryCredentials> => {
    asked.push(serve);
    return {
      username: "herd",
      password: "s3cret-registry-password",
      ca: ca.cert,
      ...(serve ? { certificate } : {}),
    };
  };
  containers = await startContainers({ dataDir, dockerd: engineDir, serveRegistry: address, credentials });
  assert.deepEqual(asked, [address], "the serving agent asked once, for its address");
  const registry = containers?.registry;
  const driver = containers?.driver;
  assert.ok(registry && driver);
  assert.equal(registry.access.ca, ca.cert);

  // Plain HTTP, no credential, a wrong one: refused. The right one over TLS: served.
  const plain = await apiRequest(`http://${address}/v2/`);
  assert.equal(plain.status, 400, "an HTTP request to the HTTPS server");
  await plain.text();
  const anonymous = await registryRequest({ address, ca: ca.cert }, "/v2/");
  assert.equal(anonymous.status, 401);
  await anonymous.text();
  const wrong = await registryRequest({ ...registry.access, password: "guess" }, "/v2/");
  assert.equal(wrong.status, 401);
  await wrong.text();
  const right = await registryRequest(registry.access, "/v2/");
  assert.equal(right.status, 200);
  await right.text();

  // A build goes to the registry through the engine (TLS verified with the CA in certs.d, the credential).
  const h = harness(t, () => driver);
  const spec = await h.spec("tls1", "");
  const dockerfile =
    "FROM herd-base\nRUN mkdir /www && echo over tls > /www/index.html\nCMD httpd -f -p $PORT -h /www\n";
  writeFileSync(join(spec.dir, "Dockerfile"), dockerfile);
  const started = await driver.start(spec);
  assert.match(started.image ?? "", new RegExp(`^${address.replace(/\./g, "\\.")}/${BUILD_REPO}@sha256:`));
  assert.equal(
    await waitFor(() => get(spec.port, "/index.html"), "the build to answer", 30_000),
    "over tls\n",
  );
  const digest = started.image?.split("@")[1];
  const listed = await registryRequest(registry.access, `/v2/${BUILD_REPO}/tags/list`);
  const tags = JSON.parse(await listed.text()) as { tags: string[] };
  assert.equal(await manifestDigest(registry.access, BUILD_REPO, tags.tags[0]), digest);

  // The engine forgets the image: the next start pulls it back by digest (no build).
  await driver.stop("tls1", 1000);
  await driver.remove("tls1");
  const api = (await import("./docker-api.ts")).DockerApi;
  const engine = new api(join(engineDir, "docker.sock"));
  const images = await engine.call<{ Id: string; RepoTags: string[] | null; RepoDigests: string[] | null }[]>(
    {
      path: "/images/json",
    },
  );
  for (const i of images)
    if ([...(i.RepoTags ?? []), ...(i.RepoDigests ?? [])].some((r) => r.includes(BUILD_REPO)))
      await engine.call({ method: "DELETE", path: `/images/${i.Id}`, query: { force: "true" } });
  const again = await h.spec("tls2", "");
  writeFileSync(join(again.dir, "Dockerfile"), dockerfile);
  const pulled = await driver.start(again);
  assert.equal(pulled.image, started.image, "the same bytes, pulled by digest");
  assert.equal(
    await waitFor(() => get(again.port, "/index.html"), "the pulled image to answer", 30_000),
    "over tls\n",
  );

  // The next agent adopts the registry as it runs; a renewed certificate restarts it with the new one.
  const pid = registry.pid();
  containers?.close();
  containers = await startContainers({ dataDir, dockerd: engineDir, serveRegistry: address, credentials });
  assert.equal(containers?.registry?.pid(), pid, "the same registry, adopted");
  certificate = await sign();
  containers?.close();
  containers = await startContainers({ dataDir, dockerd: engineDir, serveRegistry: address, credentials });
  assert.notEqual(containers?.registry?.pid(), pid, "restarted with the renewed certificate");
  const renewed = await registryRequest(registry.access, "/v2/");
  assert.equal(renewed.status, 200);
  await renewed.text();
  assert.equal(
    new X509Certificate(readFileSync(join(dataDir, "registry", "cert.pem"), "utf8")).serialNumber,
    new X509Certificate(certificate.cert).serialNumber,
  );
});
