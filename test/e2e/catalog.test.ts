// The asset catalog, end to end with real processes: alice (owner of tenant a)
// deploys an app whose lockfile pins two packages (a tarball and a directory,
// so npm ci needs no registry); the catalog search finds it by version and by
// range, says where it runs and who deployed it, and shows the gateway's calls
// to it; a slug built without a record says "packages unknown"; bob (tenant b)
// sees none of it; the platform admin sees every tenant's.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { create } from "tar";
import type {
  CatalogApp,
  CatalogAppSummary,
  PackageSearch,
  ReleasePackages,
} from "../../src/model/catalog.ts";
import { cleanupHerd, type Herd, ROOT, runCli, served, startHerd, waitFor } from "./harness.ts";

let herd: Herd;
const work = mkdtempSync(join(tmpdir(), "herd-catalog-e2e-"));
const tokens: Record<string, string> = {};

const as = (who: string, args: string[]) =>
  runCli(args, {
    env: { HERD_SERVER: herd.url, HERD_TOKEN: tokens[who], XDG_CONFIG_HOME: join(work, "nobody") },
  });
async function ok(who: string, args: string[]): Promise<string> {
  const r = await as(who, args);
  assert.equal(r.code, 0, `${who}: herd ${args.join(" ")}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}
const json = async <T>(who: string, args: string[]): Promise<T> =>
  JSON.parse(await ok(who, [...args, "--json"])) as T;

/** examples/hello as app `stock`, with a lockfile pinning tiny@0.4.0 (a tarball) and greet@1.2.3 (a directory). */
async function writeStockApp(): Promise<string> {
  const dir = join(work, "stock");
  cpSync(join(ROOT, "examples/hello"), dir, { recursive: true });
  writeFileSync(
    join(dir, "herd.yaml"),
    readFileSync(join(dir, "herd.yaml"), "utf8")
      .replace("app: hello", "app: stock")
      .replaceAll("hello.localhost", "stock.localhost"),
  );
  mkdirSync(join(work, "tiny-src/package"), { recursive: true });
  writeFileSync(
    join(work, "tiny-src/package/package.json"),
    JSON.stringify({ name: "tiny", version: "0.4.0" }),
  );
  mkdirSync(join(dir, "vendor/greet"), { recursive: true });
  writeFileSync(join(dir, "vendor/greet/package.json"), JSON.stringify({ name: "greet", version: "1.2.3" }));
  const tgz = join(dir, "vendor/tiny-0.4.0.tgz");
  await create({ gzip: true, cwd: join(work, "tiny-src"), file: tgz, portable: true }, ["package"]);
  const integrity = `sha512-${createHash("sha512").update(readFileSync(tgz)).digest("base64")}`;
  const dependencies = { greet: "file:vendor/greet", tiny: "file:vendor/tiny-0.4.0.tgz" };
  const pkg = { ...JSON.parse(readFileSync(join(dir, "package.json"), "utf8")), name: "stock", dependencies };
  writeFileSync(join(dir, "package.json"), JSON.stringify(pkg, null, 2));
  writeFileSync(
    join(dir, "package-lock.json"),
    JSON.stringify({
      name: "stock",
      version: "1.0.0",
      lockfileVersion: 3,
      requires: true,
      packages: {
        "": { name: "stock", version: "1.0.0", dependencies },
        "node_modules/greet": { resolved: "vendor/greet", link: true },
        "node_modules/tiny": { version: "0.4.0", resolved: "file:vendor/tiny-0.4.0.tgz", integrity },
        "vendor/greet": { version: "1.2.3" },
      },
    }),
  );
  return dir;
}

before(async () => {
  herd = await startHerd();
  tokens.admin = herd.token;
  for (const [user, tenant] of [
    ["alice", "a"],
    ["bob", "b"],
  ]) {
    await ok("admin", ["tenants", "create", tenant]);
    await ok("admin", ["users", "create", user]);
    await ok("admin", ["members", "add", user, "--tenant", tenant, "--role", "owner"]);
    tokens[user] = (
      await json<{ token: string }>("admin", ["tokens", "create", "laptop", "--user", user])
    ).token;
  }
});
after(async () => {
  await cleanupHerd(herd);
  rmSync(work, { recursive: true, force: true });
});

test("alice deploys an app with a lockfile; the build records its packages", async () => {
  const r = await as("alice", ["deploy", await writeStockApp()]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Recorded 2 packages from node_modules\/\.package-lock\.json for the catalog/);
  await served(herd, "stock.localhost", /^/); // any body: a 200 once the gateway has the route
});

test("the search finds the package by version and by range, with where it runs", async () => {
  const found = await json<PackageSearch>("alice", ["catalog", "search", "tiny@0.4.0"]);
  assert.equal(found.items.length, 1, JSON.stringify(found));
  const [m] = found.items;
  assert.deepEqual(
    [m.tenant, m.app, m.release, m.current, m.package],
    ["a", "stock", 1, true, { name: "tiny", version: "0.4.0" }],
  );
  assert.equal(m.instances, 2);
  assert.equal(m.running, 2);
  assert.equal(m.nodes.length, 1);
  assert.equal((await json<PackageSearch>("alice", ["catalog", "search", "greet@^1.2"])).items.length, 1);
  assert.equal((await json<PackageSearch>("alice", ["catalog", "search", "tiny@>=0.5"])).items.length, 0);
  const text = await ok("alice", ["catalog", "search", "tiny@~0.4"]);
  assert.match(
    text,
    /^TENANT +APP +RELEASE +VERSION +INSTANCES +NODES\na +stock +v1 \* +0\.4\.0 +2\/2 +\S+\n/,
  );
});

test("the app's entry: slug, packages, who deployed, where it runs, the calls seen in the traces", async () => {
  const entry = await json<CatalogApp & { releasePackages: ReleasePackages }>("alice", [
    "catalog",
    "--app",
    "stock",
  ]);
  assert.deepEqual(entry.owners, ["alice"]);
  assert.deepEqual(entry.deployers, ["user alice"]);
  const [v1] = entry.releases;
  assert.equal(v1.version, 1);
  assert.match(v1.slug, /^[0-9a-f]{64}$/);
  assert.deepEqual(v1.packages, {
    lockfile: "package-lock.json",
    from: "node_modules/.package-lock.json",
    count: 2,
  });
  assert.equal(v1.deployedBy, "user alice");
  assert.deepEqual(
    v1.runs.map((p) => [p.service, p.instances, p.running]),
    [["web", 2, 2]],
  );
  assert.deepEqual(entry.releasePackages.packages?.packages, [
    { name: "greet", version: "1.2.3" },
    { name: "tiny", version: "0.4.0" },
  ]);
  // The gateway's span of the request above reaches the trace store within its flush period.
  await waitFor("the gateway's call to stock/web among the observed calls", async () => {
    await herd.request("stock.localhost");
    const e = await json<CatalogApp>("alice", ["catalog", "--app", "stock"]);
    return e.dependencies.observed?.calls.some((c) => c.to === "stock/web");
  });
  const summary = await json<{ items: CatalogAppSummary[] }>("alice", ["catalog"]);
  assert.deepEqual(
    summary.items.map((s) => [s.app, s.release, s.packages, s.running]),
    [["stock", 1, 2, 2]],
  );
});

test("a slug built without a record of its packages says unknown", async () => {
  await ok("alice", ["deploy", join(ROOT, "examples/hello")]);
  // As if built before herd recorded packages: the record beside hello's slug is removed before any read.
  const sidecars = readdirSync(join(herd.dataDir, "artifacts/sha256"), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(".packages.json"))
    .map((f) => join(herd.dataDir, "artifacts/sha256", f))
    .filter((f) => JSON.parse(readFileSync(f, "utf8")).from === null);
  assert.equal(sidecars.length, 1, "hello installs nothing: its record is the one with no source");
  rmSync(sidecars[0]);
  const found = await json<PackageSearch>("alice", ["catalog", "search", "tiny"]);
  assert.deepEqual(found.unknown, [{ tenant: "a", app: "hello", release: 1 }]);
  assert.match(await ok("alice", ["catalog"]), /\na +hello +v1 +[0-9a-f]{12} +unknown +/);
});

test("bob, in tenant b, sees none of it; the platform admin sees every tenant's", async () => {
  const theirs = await json<PackageSearch>("bob", ["catalog", "search", "tiny"]);
  assert.deepEqual(theirs.items, []);
  assert.deepEqual(theirs.unknown, []);
  assert.deepEqual((await json<{ items: unknown[] }>("bob", ["catalog"])).items, []);
  const named = await as("bob", ["catalog", "search", "tiny", "--tenant", "a"]);
  assert.equal(named.code, 1);
  assert.equal(named.stderr, "herd: user bob has no role in tenant a\n");
  const app = await as("bob", ["catalog", "--app", "stock"]);
  assert.equal(app.code, 1);
  assert.equal(app.stderr, "herd: app stock does not exist (herd apps lists the apps)\n");
  const all = await json<PackageSearch>("admin", ["catalog", "search", "tiny@0.4.0"]);
  assert.deepEqual(
    all.items.map((m) => `${m.tenant}/${m.app}`),
    ["a/stock"],
  );
});
