// herd export kubernetes against a real control plane: YAML on stdout and one
// file per object with --out, every document valid against the Kubernetes
// OpenAPI schema; warnings on stderr; usage errors.

import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parse, parseAllDocuments } from "yaml";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { schemaError } from "../export/schema-testing.ts";
import { normalizeService, parseManifest } from "../model/manifest.ts";
import { type App, type Release, releaseKey, type Service } from "../model/objects.ts";
import { runCli } from "./test-api.ts";

const dir = mkdtempSync(join(tmpdir(), "herd-cli-export-"));
let server: RunningServer;

before(async () => {
  server = await startServer({ dataDir: join(dir, "data"), port: 0, logger: silentLogger });
  const m = parseManifest(`app: blog
services:
  web:
    command: node server.js
    env: { SESSION_KEY: { secret: SESSION_KEY } }
    routes: [{ host: blog.example.com, cors: { origins: ["*"] } }]
    autoscale: { min: 1, max: 4, target: { concurrency: 20 } }
`);
  const now = new Date().toISOString();
  const spec = normalizeService("blog", "web", m.services.web, undefined);
  await server.store.put<Release>("release", releaseKey("default", "blog", 1), {
    tenant: "default",
    app: "blog",
    version: 1,
    createdAt: now,
    description: "test",
    source: "0".repeat(64),
    slug: "0".repeat(64),
    services: { web: spec },
  });
  await server.store.put<App>("app", "default/blog", {
    tenant: "default",
    name: "blog",
    createdAt: now,
    release: 1,
    latestVersion: 1,
  });
  await server.store.put<Service>("service", "default/blog/web", {
    tenant: "default",
    app: "blog",
    name: "web",
    release: 1,
    spec,
    instances: 1,
    state: "running",
    message: "",
    crashes: 0,
  });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (argv: string[]) => runCli(argv, { server: server.url, token: server.adminToken, cwd: dir });

test("herd export kubernetes: a YAML stream of valid objects, warnings on stderr", async () => {
  const r = await cli(["export", "kubernetes", "--app", "blog", "--image", "registry.example.com/blog:1"]);
  assert.equal(r.code, 0, r.err);
  const docs = parseAllDocuments(r.out).map((d) => d.toJS());
  assert.deepEqual(
    docs.map((d) => `${d.kind}/${d.metadata.name}`),
    [
      "Secret/blog-secrets",
      "Deployment/blog-web",
      "Service/blog-web",
      "HorizontalPodAutoscaler/blog-web",
      "Ingress/blog",
    ],
  );
  for (const d of docs) assert.equal(schemaError(d), undefined, `${d.kind} ${d.metadata.name}`);
  assert.equal(docs[1].spec.template.spec.containers[0].image, "registry.example.com/blog:1");
  assert.match(r.err, /^warning: route blog\.example\.com\/ of web: cors not expressed/m);
  assert.match(
    r.err,
    /^warning: web: autoscale on concurrency reads the metric herd_http_requests_in_flight/m,
  );
});

test("herd export kubernetes --out DIR: one file per object, each valid", async () => {
  const r = await cli(["export", "kubernetes", "--app", "blog", "--out", "k8s"]);
  assert.equal(r.code, 0, r.err);
  const files = readdirSync(join(dir, "k8s")).sort();
  assert.deepEqual(files, [
    "deployment-blog-web.yaml",
    "horizontalpodautoscaler-blog-web.yaml",
    "ingress-blog.yaml",
    "secret-blog-secrets.yaml",
    "service-blog-web.yaml",
  ]);
  for (const f of files) {
    const o = parse(readFileSync(join(dir, "k8s", f), "utf8"));
    assert.equal(schemaError(o), undefined, f);
  }
  assert.match(r.out, /wrote 5 manifests of blog v1 to .*k8s/);
});

test("herd export: usage errors and a missing app", async () => {
  const none = await cli(["export"]);
  assert.equal(none.code, 2);
  assert.match(none.err, /export needs a format: kubernetes/);
  const other = await cli(["export", "helm", "--app", "blog"]);
  assert.match(other.err, /unknown export format: helm/);
  const missing = await cli(["export", "kubernetes", "--app", "nope"]);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /app nope does not exist/);
  const bad = await cli(["export", "kubernetes", "--app", "blog", "--image", "UPPER CASE"]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /image/);
});
