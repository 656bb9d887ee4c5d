// herd export kubernetes end to end through `herd up`: a deployed app (routes,
// health, a pet, a secret, herd scale) exported with --out; every file valid
// against the Kubernetes OpenAPI schema; the manifests say what herd runs (the
// count now, the host the gateway serves); the secret's value is in no file.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parse } from "yaml";
import { schemaError } from "../../src/export/schema-testing.ts";
import type { Instance } from "../../src/model/objects.ts";
import { cleanupHerd, type Herd, served, startHerd, waitFor } from "./harness.ts";

let herd: Herd | undefined;
const work = mkdtempSync(join(tmpdir(), "herd-export-e2e-"));
const appDir = join(work, "kiosk");
const SECRET = `kiosk-${Math.random().toString(36).slice(2)}-value`;

before(async () => {
  mkdirSync(appDir);
  writeFileSync(
    join(appDir, "herd.yaml"),
    `app: kiosk
services:
  web:
    command: node server.js
    instances: 1
    health: { path: /healthz }
    resources: { memory: 64Mi, memoryLimit: 128Mi }
    env: { GREETING: hello, API_KEY: { secret: api-key } }
    routes: [{ host: kiosk.localhost }]
  store:
    command: node server.js
    mode: pet
`,
  );
  writeFileSync(join(appDir, "package.json"), `{"name":"kiosk","version":"1.0.0","type":"module"}\n`);
  writeFileSync(
    join(appDir, "server.js"),
    `import { createServer } from "node:http";
createServer((req, res) => res.end(req.url === "/healthz" ? "ok" : "kiosk")).listen(Number(process.env.PORT));
`,
  );
  herd = await startHerd();
});
after(async () => {
  if (herd) await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

test("a deployed and scaled app exports to schema-valid manifests that match what herd runs", async () => {
  const h = herd as Herd;
  const set = await h.api("PUT", "/apps/kiosk/secrets/api-key", { value: SECRET });
  assert.ok(set.status < 300, JSON.stringify(set.body));
  const deployed = await h.cli(["deploy", appDir], { cwd: appDir });
  assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
  const scaled = await h.cli(["scale", "web=2", "--app", "kiosk"]);
  assert.equal(scaled.code, 0, scaled.stderr);
  await waitFor(
    "two web instances running",
    async () => {
      const r = await h.api<{ items: Instance[] }>("GET", "/apps/kiosk/instances");
      return (
        r.body.items.filter((i) => i.service === "web" && i.state === "running").length === 2 || undefined
      );
    },
    60_000,
  );
  await served(h, "kiosk.localhost", "kiosk");

  const out = join(work, "k8s");
  const r = await h.cli([
    "export",
    "kubernetes",
    "--app",
    "kiosk",
    "--out",
    out,
    "--image",
    "registry.test/kiosk:v1",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const files = readdirSync(out).sort();
  assert.deepEqual(files, [
    "deployment-kiosk-web.yaml",
    "ingress-kiosk.yaml",
    "secret-kiosk-secrets.yaml",
    "service-kiosk-store-pods.yaml",
    "service-kiosk-web.yaml",
    "statefulset-kiosk-store.yaml",
  ]);
  // biome-ignore lint/suspicious/noExplicitAny: reading manifests
  const docs: Record<string, any> = {};
  for (const f of files) {
    const text = readFileSync(join(out, f), "utf8");
    assert.ok(!text.includes(SECRET), `${f} holds the secret's value`);
    docs[f] = parse(text);
    assert.equal(schemaError(docs[f]), undefined, f);
  }
  const web = docs["deployment-kiosk-web.yaml"];
  assert.equal(web.spec.replicas, 2, "the count herd runs now");
  const [c] = web.spec.template.spec.containers;
  assert.equal(c.image, "registry.test/kiosk:v1");
  assert.deepEqual(c.resources.limits, { memory: "128Mi" });
  assert.equal(c.readinessProbe.httpGet.path, "/healthz");
  assert.equal(docs["ingress-kiosk.yaml"].spec.rules[0].host, "kiosk.localhost");
  assert.equal(docs["statefulset-kiosk-store.yaml"].spec.volumeClaimTemplates[0].metadata.name, "data");
  assert.deepEqual(docs["secret-kiosk-secrets.yaml"].stringData, { "api-key": "REPLACE_ME" });
});
