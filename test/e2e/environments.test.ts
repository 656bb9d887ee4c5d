// Environments on a real herd: a pipeline staging → production; `herd promote`
// ships staging's slug to production with no build, and production keeps its
// own env; promotion backwards is refused; a preview app serves on its own
// host and is destroyed by itself after a short TTL.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { App, Release } from "../../src/model/objects.ts";
import type { Preview } from "../../src/model/pipeline.ts";
import { cleanupHerd, type Herd, served, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-envs-"));

before(async () => {
  herd = await startHerd();
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

/** A web service answering `<COLOR env>:<code tag>:<TOKEN secret>`; the tag is in the code, COLOR in herd.yaml. */
function writeApp(app: string, tag: string, color: string): string {
  const dir = join(work, `${app}-${tag}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: app, private: true, type: "module" }));
  writeFileSync(
    join(dir, "server.js"),
    `import { createServer } from "node:http";\ncreateServer((req, res) => res.end(process.env.COLOR + ":${tag}:" + process.env.TOKEN)).listen(Number(process.env.PORT));\n`,
  );
  writeFileSync(
    join(dir, "herd.yaml"),
    [
      `app: ${app}`,
      "services:",
      "  web:",
      "    command: node server.js",
      "    resources: { cpu: 0.05, memory: 32Mi }",
      `    env: { COLOR: ${color}, TOKEN: { secret: api-token } }`,
      "",
    ].join("\n"),
  );
  return dir;
}

async function releases(app: string): Promise<{ current: Release; all: Release[] }> {
  const a = (await herd.api<{ app: App }>("GET", `/apps/${app}`)).body.app;
  const all = (await herd.api<{ items: Release[] }>("GET", `/apps/${app}/releases`)).body.items;
  return { current: all.find((r) => r.version === a.release)!, all };
}

test("promote ships staging's slug to production without a rebuild; production keeps its env and secrets", async () => {
  for (const [app, value] of [
    ["shop", "prod-token"],
    ["shop-staging", "staging-token"],
  ]) {
    const set = await herd.api("PUT", `/apps/${app}/secrets/api-token`, { value });
    assert.ok(set.status < 300, JSON.stringify(set.body));
  }
  let r = await herd.cli(["deploy", writeApp("shop", "v1", "prod")], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  r = await herd.cli(["deploy", writeApp("shop-staging", "v2", "staging")], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // Each gateway has the routes a moment after the deploys are done.
  await served(herd, "shop.localhost", "prod:v1:prod-token");
  await served(herd, "shop-staging.localhost", "staging:v2:staging-token");

  const bad = await herd.cli([
    "pipelines",
    "create",
    "shop",
    "--stage",
    "staging=shop-staging",
    "--stage",
    "qa=shop-staging",
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /stages\.1\.app: app shop-staging is in two stages/);
  r = await herd.cli([
    "pipelines",
    "create",
    "shop",
    "--stage",
    "staging=shop-staging",
    "--stage",
    "production=shop",
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /staging \(shop-staging\) → production \(shop\)/);

  const back = await herd.api<{ message: string; details: { field: string }[] }>(
    "POST",
    "/pipelines/shop/promote",
    {
      from: "production",
      to: "staging",
    },
  );
  assert.equal(back.status, 400);
  assert.equal(back.body.details[0]?.field, "to");

  const staging = (await releases("shop-staging")).current;
  r = await herd.cli(["promote", "--app", "shop-staging", "--from", "staging", "--to", "production"], {
    timeoutMs: 120_000,
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Promoting shop-staging v1 \(staging\) to shop \(production\)/);
  assert.doesNotMatch(r.stdout, /herd\.yaml found|detected|Installing|Packing/i, "no build ran");

  const prod = (await releases("shop")).current;
  assert.equal(prod.version, 2);
  assert.equal(prod.slug, staging.slug, "the same slug digest");
  assert.deepEqual(prod.promotedFrom, {
    pipeline: "shop",
    stage: "staging",
    app: "shop-staging",
    version: 1,
  });
  assert.equal(prod.services.web?.env.COLOR, "prod", "production kept its env");
  assert.deepEqual(
    prod.services.web?.routes.map((x) => x.host),
    ["shop.localhost"],
  );
  // The new code, production's env, on production's host; staging untouched.
  await waitFor(
    "production serves the promoted code",
    async () => (await herd.request("shop.localhost")).body === "prod:v2:prod-token",
  );
  assert.equal((await herd.request("shop-staging.localhost")).body, "staging:v2:staging-token");

  const show = await herd.cli(["pipelines", "show", "shop"]);
  assert.match(
    show.stdout,
    new RegExp(`production\\s+shop\\s+v2\\s+${staging.slug.slice(0, 12)}\\s+shop-staging v1`),
    show.stdout,
  );
});

test("a preview app serves on its own host and is destroyed after its TTL", async () => {
  const dir = writeApp("shop-staging", "v3", "preview");
  // A preview is an app of its own: its secrets are set before its first deploy, like any app's.
  const set = await herd.api("PUT", "/apps/shop-staging-pr7/secrets/api-token", { value: "preview-token" });
  assert.ok(set.status < 300, JSON.stringify(set.body));
  const r = await herd.cli(["deploy", dir, "--preview", "pr7", "--ttl", "12s"], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Preview pr7 of shop-staging: app shop-staging-pr7/);
  await served(herd, "shop-staging-pr7.localhost", "preview:v3:preview-token");
  assert.equal(
    (await herd.request("shop-staging.localhost")).body,
    "staging:v2:staging-token",
    "the app itself is untouched",
  );
  const list = await herd.cli(["previews"]);
  assert.match(
    list.stdout,
    /pr7\s+shop-staging\s+shop-staging-pr7\s+shop-staging-pr7\.localhost/,
    list.stdout,
  );

  const badTtl = await herd.api<{ details: { field: string }[] }>("POST", "/apps/shop-staging/previews", {
    name: "pr8",
    ttl: "45d",
  });
  assert.equal(badTtl.status, 400);
  assert.equal(badTtl.body.details[0]?.field, "ttl");

  await waitFor(
    "the preview app to be destroyed after its TTL",
    async () => (await herd.api("GET", "/apps/shop-staging-pr7")).status === 404,
    60_000,
  );
  // The app is gone from the store; the gateway drops its route (and its draining instance) a moment later.
  await waitFor(
    "the preview host to stop serving the preview",
    async () => (await herd.request("shop-staging-pr7.localhost")).body !== "preview:v3:preview-token",
  );
  await waitFor(
    "the preview record to go",
    async () => (await herd.api<{ items: Preview[] }>("GET", "/previews")).body.items.length === 0,
  );
  assert.equal((await herd.request("shop-staging.localhost")).body, "staging:v2:staging-token");
});
