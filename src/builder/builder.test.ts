import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer, type Server } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { create } from "tar";
import { findNft } from "../agent/firewall.ts";
import { detectSandbox, ownPidsAllowed } from "../agent/sandbox.ts";
import { PACKAGES_METADATA } from "../catalog/lockfile.ts";
import { HerdError } from "../common/errors.ts";
import { ArtifactStore } from "./artifact-store.ts";
import { buildFirewallTable } from "./build-firewall.ts";
import { BuildRunner } from "./build-runner.ts";
import { type BuildOptions, buildSlug } from "./builder.ts";
import { NODE_REF_FILE, NodeRuntimes, type NpmRunner } from "./node-runtime.ts";
import { packAll, packDirectory } from "./pack.ts";
import { unpackTarball } from "./unpack.ts";

const run = promisify(execFile);
const hello = new URL("../../examples/hello/", import.meta.url).pathname;

describe("buildSlug", { timeout: 120_000 }, () => {
  let root: string;
  let artifacts: ArtifactStore;
  let workDir: string;
  let scratch: string;
  let runner: BuildRunner;
  const children: ChildProcess[] = [];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "herd-builder-"));
    artifacts = new ArtifactStore(join(root, "artifacts"));
    workDir = join(root, "work");
    scratch = join(root, "scratch");
    runner = new BuildRunner({ cacheDir: workDir, scratchDir: scratch });
  });
  after(async () => {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  });

  let count = 0;
  const writeApp = async (files: Record<string, string>): Promise<string> => {
    const dir = join(root, `src${++count}`);
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), text);
    }
    return dir;
  };

  /** Packs and uploads `dir`, then builds it; returns the result, the log and the unpacked slug. */
  const build = async (dir: string, extra: Partial<BuildOptions> = {}) => {
    const packed = await packDirectory(dir);
    const source = await artifacts.putFile(packed.file).finally(() => rm(packed.file, { force: true }));
    const lines: string[] = [];
    const result = await buildSlug({
      artifacts,
      source: source.digest,
      workDir,
      runner,
      log: (l) => lines.push(l),
      ...extra,
    });
    const slugDir = join(root, `slug${++count}`);
    await unpackTarball(await artifacts.path(result.slug), slugDir);
    return { result, lines, slugDir };
  };

  const buildFails = async (
    dir: string,
    pattern: RegExp,
    extra: Partial<BuildOptions> = {},
  ): Promise<HerdError> => {
    const packed = await packDirectory(dir);
    const source = await artifacts.putFile(packed.file).finally(() => rm(packed.file, { force: true }));
    let caught: unknown;
    await buildSlug({ artifacts, source: source.digest, workDir, runner, log: () => {}, ...extra }).catch(
      (err) => {
        caught = err;
      },
    );
    assert.ok(caught instanceof HerdError, String(caught));
    assert.equal(caught.code, "invalid");
    assert.match(caught.message, pattern);
    return caught;
  };

  it("builds examples/hello (no dependencies) into a slug", async () => {
    const { result, lines, slugDir } = await build(hello);
    assert.equal(result.app, "hello");
    assert.equal(result.kind, "manifest");
    assert.equal(result.services.web.command, "node server.js");
    assert.match(result.slug, /^[0-9a-f]{64}$/);
    assert.ok(lines.includes("-----> No dependencies to install"), lines.join("\n"));
    assert.ok(lines.some((l) => /^-----> Slug [0-9a-f]{12} ready$/.test(l)));
    assert.equal(
      await readFile(join(slugDir, "server.js"), "utf8"),
      await readFile(join(hello, "server.js"), "utf8"),
    );
    // The build's throwaway directory is gone once the build is done.
    assert.deepEqual(await readdir(scratch), []);
  });

  it("installs a local file: dependency with npm install, and the slug carries it", async () => {
    const dir = await writeApp({
      "package.json": JSON.stringify({
        name: "greeter",
        version: "1.0.0",
        dependencies: { greet: "file:vendor/greet" },
        scripts: { start: "node index.js" },
      }),
      "index.js": "console.log(require('greet')('slug'));\n",
      "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.0.0", main: "index.js" }),
      "vendor/greet/index.js": 'module.exports = (who) => "hello " + who;\n',
    });
    const { result, lines, slugDir } = await build(dir);
    assert.equal(result.kind, "node");
    assert.equal(result.app, "greeter");
    assert.ok(lines.includes("-----> Node app detected: app greeter, services web"), lines.join("\n"));
    assert.ok(lines.includes("-----> Installing dependencies with npm install"), lines.join("\n"));
    const { stdout } = await run(process.execPath, ["index.js"], { cwd: slugDir });
    assert.equal(stdout, "hello slug\n");
  });

  /** npm as the registry would answer for 22.x, its "Node" a script that prints its version. */
  const fakeNpm: NpmRunner = async (args) => {
    if (args[0] === "view") {
      if (args[1] !== "node@22.x") throw new HerdError("invalid", `npm view ${args[1]}: 404 No match found`);
      return JSON.stringify(["22.1.0", "22.10.2", "22.9.0"]);
    }
    const dest = args[3];
    await mkdir(join(dest, "build", "package", "bin"), { recursive: true });
    await writeFile(join(dest, "build", "package", "bin", "node"), "#!/bin/sh\necho v22.10.2\n", {
      mode: 0o755,
    });
    await create({ gzip: true, cwd: join(dest, "build"), file: join(dest, "n.tgz"), portable: true }, [
      "package",
    ]);
    return JSON.stringify([{ filename: "n.tgz" }]);
  };

  /** An app pinned to Node 22.x with a local dependency (so its install scripts run) and `install`. */
  const pinnedApp = (name: string, install: string): Promise<string> =>
    writeApp({
      "package.json": JSON.stringify({
        name,
        version: "1.0.0",
        engines: { node: "22.x" },
        dependencies: { greet: "file:vendor/greet" },
        scripts: { start: "node index.js", install },
      }),
      "index.js": "",
      "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.0.0" }),
    });

  it("engines.node: install scripts run on the chosen Node and the slug names it; herd's own Node otherwise", async () => {
    const runtimes = new NodeRuntimes({ dir: join(root, "node"), npm: fakeNpm, platform: "linux-x64" });
    const dir = await pinnedApp("pinned", "node --version > installed-on.txt");
    const { result, lines, slugDir } = await build(dir, { runtimes });
    assert.equal(result.node, "22.10.2");
    assert.ok(lines.includes('-----> Node v22.10.2 (engines.node "22.x")'), lines.join("\n"));
    assert.ok(lines.includes("       install scripts run on Node v22.10.2"), lines.join("\n"));
    assert.equal(await readFile(join(slugDir, "installed-on.txt"), "utf8"), "v22.10.2\n");
    const ref = JSON.parse(await readFile(join(slugDir, NODE_REF_FILE), "utf8"));
    assert.deepEqual(Object.keys(ref).sort(), ["digest", "platform", "version"]);
    assert.equal(ref.version, "22.10.2");
    assert.ok(await runtimes.tarball(ref.digest), "the slug names a runtime agents can download");

    const plain = await build(hello, { runtimes });
    assert.equal(plain.result.node, undefined);
    assert.ok(
      plain.lines.includes(
        `-----> Node ${process.version}, herd's own (package.json's engines.node chooses another)`,
      ),
    );
    await assert.rejects(stat(join(plain.slugDir, NODE_REF_FILE)), { code: "ENOENT" });
  });

  it("links an install script leaves at .herd send none of herd's writes elsewhere", async () => {
    const runtimes = new NodeRuntimes({ dir: join(root, "node"), npm: fakeNpm, platform: "linux-x64" });
    // Outside the app: what root would have written into (and clobbered) through the links.
    const elsewhere = join(root, "elsewhere");
    await mkdir(elsewhere, { recursive: true, mode: 0o777 });
    await writeFile(join(elsewhere, "node.json"), "mine\n", { mode: 0o666 });
    const plant = `mkdir -p .herd && ln -s ${join(elsewhere, "node.json")} .herd/node.json && ln -s ${elsewhere} .herd/static-server.mjs`;
    const dir = await pinnedApp("planter", plant);
    const { result, slugDir } = await build(dir, { runtimes });
    assert.equal(result.node, "22.10.2");
    assert.equal(await readFile(join(elsewhere, "node.json"), "utf8"), "mine\n", "written through the link");
    assert.equal(JSON.parse(await readFile(join(slugDir, NODE_REF_FILE), "utf8")).version, "22.10.2");
    // The same with .herd itself a link to the directory outside.
    const linked = await pinnedApp("planter2", `ln -s ${elsewhere} .herd`);
    await build(linked, { runtimes });
    assert.equal(
      await readFile(join(elsewhere, "node.json"), "utf8"),
      "mine\n",
      "written through the linked dir",
    );
  });

  it("engines.node nothing satisfies, or not a string, fails the build naming engines.node", async () => {
    const runtimes = new NodeRuntimes({ dir: join(root, "node"), npm: fakeNpm, platform: "linux-x64" });
    const app = (node: unknown) =>
      writeApp({
        "package.json": JSON.stringify({ name: "x", engines: { node }, scripts: { start: "node ." } }),
      });
    const none = await buildFails(
      await app("99.x"),
      /no published Node version satisfies engines\.node "99\.x"/,
      {
        runtimes,
      },
    );
    assert.equal(none.details?.[0].field, "engines.node");
    await buildFails(await app(22), /engines\.node in package\.json must be a string/, { runtimes });
  });

  it("drops a .herd/ directory of the source: what it holds in a slug is herd's own", async () => {
    const dir = await writeApp({
      "server.js": "",
      Procfile: "web: node server.js\n",
      [NODE_REF_FILE]: JSON.stringify({ version: "1.0.0", platform: "linux-x64", digest: "a".repeat(64) }),
    });
    // Not packDirectory: `herd deploy` leaves .herd out, a hand-made upload may not.
    const packed = await packAll(dir);
    const source = await artifacts.putFile(packed.file).finally(() => rm(packed.file, { force: true }));
    const result = await buildSlug({ artifacts, source: source.digest, workDir, runner, log: () => {} });
    const slugDir = join(root, `slug${++count}`);
    await unpackTarball(await artifacts.path(result.slug), slugDir);
    await assert.rejects(stat(join(slugDir, ".herd")), { code: "ENOENT" });
  });

  it("uses npm ci when there is a lockfile", async () => {
    const pkg = { name: "locked", version: "1.0.0", scripts: { start: "node index.js" } };
    const dir = await writeApp({
      "package.json": JSON.stringify(pkg),
      "package-lock.json": JSON.stringify({
        name: "locked",
        version: "1.0.0",
        lockfileVersion: 3,
        requires: true,
        packages: { "": { name: "locked", version: "1.0.0" } },
      }),
      "index.js": "",
    });
    const { lines } = await build(dir, { app: "other-name" }).then(async (b) => {
      assert.equal(b.result.app, "other-name");
      return b;
    });
    assert.ok(lines.includes("-----> Installing dependencies with npm ci"), lines.join("\n"));
  });

  it("records the packages the slug ships beside it (dev packages left out), for the catalog", async () => {
    const dir = await writeApp({
      "package.json": JSON.stringify({
        name: "listed",
        version: "1.0.0",
        dependencies: { greet: "file:vendor/greet" },
        devDependencies: { tester: "file:vendor/tester" },
        scripts: { start: "node index.js" },
      }),
      "index.js": "",
      "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.2.3" }),
      "vendor/tester/package.json": JSON.stringify({ name: "tester", version: "9.0.0" }),
    });
    const { result, lines } = await build(dir);
    const expected = {
      lockfile: null,
      from: "node_modules/.package-lock.json",
      packages: [{ name: "greet", version: "1.2.3" }],
    };
    assert.deepEqual(result.packages, expected);
    assert.deepEqual(await artifacts.getMetadata(result.slug, PACKAGES_METADATA), expected);
    assert.ok(
      lines.includes("-----> Recorded 1 package from node_modules/.package-lock.json for the catalog"),
      lines.join("\n"),
    );
    // Nothing to install: an empty list, not an unknown one.
    const plain = await build(await writeApp({ "index.html": "<p>hi</p>" }));
    assert.deepEqual(await artifacts.getMetadata(plain.result.slug, PACKAGES_METADATA), {
      lockfile: null,
      from: null,
      packages: [],
    });
  });

  it("runs package.json's build script with the devDependencies, then prunes them: the slug ships the output and no dev package", async () => {
    const dir = await writeApp({
      "package.json": JSON.stringify({
        name: "compiled",
        version: "1.0.0",
        dependencies: { greet: "file:vendor/greet" },
        devDependencies: { compiler: "file:vendor/compiler" },
        scripts: { build: "node -e \"require('compiler')('dist/out.txt')\"", start: "node index.js" },
      }),
      "index.js": "",
      "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.0.0" }),
      "vendor/compiler/package.json": JSON.stringify({
        name: "compiler",
        version: "2.0.0",
        main: "index.js",
      }),
      "vendor/compiler/index.js":
        "const fs = require('fs'); module.exports = (out) => { fs.mkdirSync('dist', { recursive: true }); fs.writeFileSync(out, 'compiled'); };\n",
    });
    const { result, lines, slugDir } = await build(dir);
    const at = (line: string) => lines.indexOf(line);
    assert.ok(
      at("-----> Installing dependencies with npm install (devDependencies too, for the build)") >= 0,
      lines.join("\n"),
    );
    assert.ok(
      at("-----> Building with npm run build") >
        at("-----> Installing dependencies with npm install (devDependencies too, for the build)"),
    );
    assert.ok(
      at("-----> Pruning devDependencies") > at("-----> Building with npm run build"),
      lines.join("\n"),
    );
    assert.equal(await readFile(join(slugDir, "dist", "out.txt"), "utf8"), "compiled");
    assert.equal(
      await stat(join(slugDir, "node_modules", "greet")).then(
        () => true,
        () => false,
      ),
      true,
    );
    assert.equal(
      await stat(join(slugDir, "node_modules", "compiler")).then(
        () => true,
        () => false,
      ),
      false,
    );
    assert.deepEqual(result.packages?.packages, [{ name: "greet", version: "1.0.0" }]);

    // A build script with nothing to install runs all the same; a failing one fails the build, naming it.
    await build(
      await writeApp({
        "package.json": JSON.stringify({
          name: "bare",
          version: "1.0.0",
          scripts: { build: "node -e \"require('fs').writeFileSync('b.txt', 'b')\"" },
        }),
        "server.js": "",
      }),
    ).then(async ({ slugDir: bare, lines: l }) => {
      assert.ok(
        l.includes("-----> No dependencies to install") && l.includes("-----> Building with npm run build"),
        l.join("\n"),
      );
      assert.equal(await readFile(join(bare, "b.txt"), "utf8"), "b");
    });
    // herd-build wins over build; an empty one builds nothing (a build script meant for a laptop stays there).
    const chosen = await build(
      await writeApp({
        "package.json": JSON.stringify({
          name: "chosen",
          version: "1.0.0",
          scripts: { build: "exit 9", "herd-build": "node -e \"require('fs').writeFileSync('h.txt', 'h')\"" },
        }),
        "server.js": "",
      }),
    );
    assert.ok(chosen.lines.includes("-----> Building with npm run herd-build"), chosen.lines.join("\n"));
    assert.equal(await readFile(join(chosen.slugDir, "h.txt"), "utf8"), "h");
    const skipped = await build(
      await writeApp({
        "package.json": JSON.stringify({
          name: "skipped",
          version: "1.0.0",
          scripts: { build: "exit 9", "herd-build": "" },
        }),
        "server.js": "",
      }),
    );
    assert.ok(!skipped.lines.some((l) => l.startsWith("-----> Building")), skipped.lines.join("\n"));
    await assert.rejects(
      build(
        await writeApp({
          "package.json": JSON.stringify({ name: "broken", version: "1.0.0", scripts: { build: "exit 3" } }),
          "server.js": "",
        }),
      ),
      /build failed: npm run build exited with 3/,
    );
  });

  it("fails with the command, its exit code and the last lines of output", async () => {
    const dir = await writeApp({
      "package.json": JSON.stringify({
        name: "broken",
        version: "1.0.0",
        dependencies: { greet: "file:vendor/greet" },
        scripts: {
          start: "node index.js",
          install: "node -e \"console.error('compile error in foo'); process.exit(3)\"",
        },
      }),
      "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.0.0" }),
    });
    const err = await buildFails(
      dir,
      /^build failed: npm install --omit=dev --no-audit --no-fund exited with [1-9]\d*$/,
    );
    assert.ok(
      (err.details ?? []).some((d) => d.message.includes("compile error in foo")),
      JSON.stringify(err.details),
    );
    assert.deepEqual(await readdir(scratch), []);
  });

  it("stops a build that runs past its time limit", async () => {
    const dir = await writeApp({
      "package.json": JSON.stringify({
        name: "slow",
        version: "1.0.0",
        scripts: {
          start: "node index.js",
          install: "node -e \"console.log('waiting'); setTimeout(() => {}, 60000)\"",
        },
      }),
      "package-lock.json": JSON.stringify({
        name: "slow",
        version: "1.0.0",
        lockfileVersion: 3,
        requires: true,
        packages: { "": { name: "slow", version: "1.0.0", hasInstallScript: true } },
      }),
    });
    const started = Date.now();
    await buildFails(dir, /^build failed: npm ci --omit=dev --no-audit --no-fund timed out after 2 s$/, {
      timeoutMs: 2000,
    });
    assert.ok(Date.now() - started < 20_000);
  });

  it("runs install scripts as the app's build uid, with a clean env, seeing neither the data dir nor the host's /proc", {
    skip: detectSandbox().enabled ? false : "no sandbox here (needs root, unshare and setpriv)",
  }, async () => {
    process.env.HERD_TEST_CONTROL_PLANE_SECRET = "do-not-leak";
    await writeFile(join(workDir, "..", "admin-token"), "s3cret", { mode: 0o600 });
    const probe = [
      "const fs = require('fs');",
      "const tryRead = (f) => { try { fs.readFileSync(f); return 'read'; } catch (e) { return e.code; } };",
      "fs.writeFileSync('probe.json', JSON.stringify({ uid: process.getuid(), cwd: process.cwd(),",
      `  env: Object.keys(process.env), token: tryRead(${JSON.stringify(join(root, "admin-token"))}),`,
      `  host: tryRead('/proc/${process.pid}/environ'), pids: fs.readdirSync('/proc').filter((n) => /^[0-9]+$/.test(n)).length }));`,
    ].join(" ");
    const pkg = (name: string) => ({
      name,
      version: "1.0.0",
      dependencies: { greet: "file:vendor/greet" },
      scripts: { start: "node index.js", install: `node -e ${JSON.stringify(probe)}` },
    });
    const files = (name: string) => ({
      "package.json": JSON.stringify(pkg(name)),
      "index.js": "",
      "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.0.0" }),
    });
    try {
      const { slugDir, lines } = await build(await writeApp(files("probed")), { tenant: "acme" });
      assert.ok(
        lines.some((l) => /^ +isolation: sandbox uid, cgroups/.test(l)),
        lines.join("\n"),
      );
      const p = JSON.parse(await readFile(join(slugDir, "probe.json"), "utf8"));
      assert.ok(p.uid >= 1_000_000_000, `uid ${p.uid}`);
      assert.equal(p.cwd, "/run/herd-sandbox/app");
      assert.ok(!p.env.includes("HERD_TEST_CONTROL_PLANE_SECRET"), p.env.join(" "));
      assert.ok(["EACCES", "ENOENT"].includes(p.token), p.token);
      // The control plane's processes are not in its /proc (hidden; with a pid namespace of its own,
      // where the machine allows one, only the build's few are there at all).
      assert.equal(p.host, "ENOENT");
      const sandbox = detectSandbox();
      if (sandbox.enabled && ownPidsAllowed(sandbox))
        assert.ok(p.pids < 20, `${p.pids} processes in its /proc`);
      // The app's cache is kept, owned by its build uid; another app of the tenant gets another uid.
      const cache = join(workDir, "apps", "acme", "probed");
      assert.equal((await stat(cache)).uid, p.uid);
      const other = await build(await writeApp(files("second")), { tenant: "acme" });
      const q = JSON.parse(await readFile(join(other.slugDir, "probe.json"), "utf8"));
      assert.notEqual(q.uid, p.uid);
    } finally {
      delete process.env.HERD_TEST_CONTROL_PLANE_SECRET;
    }
  });

  it("builds trust what the control plane's machine trusts: its extra CA files reach the install (a TLS-inspecting proxy's CA)", async () => {
    const set = {
      NODE_EXTRA_CA_CERTS: "/etc/ssl/certs/extra.pem",
      SSL_CERT_FILE: "/etc/ssl/cert.pem",
      SSL_CERT_DIR: "/etc/ssl/certs",
    };
    const before = Object.fromEntries(Object.keys(set).map((k) => [k, process.env[k]]));
    Object.assign(process.env, set);
    const runner = new BuildRunner({ cacheDir: join(root, "ca-cache"), scratchDir: scratch });
    for (const [k, v] of Object.entries(before))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    const probe = `require('fs').writeFileSync('ca.json', JSON.stringify({ node: process.env.NODE_EXTRA_CA_CERTS, file: process.env.SSL_CERT_FILE, dir: process.env.SSL_CERT_DIR }))`;
    const dir = await writeApp({
      "package.json": JSON.stringify({
        name: "trusting",
        version: "1.0.0",
        dependencies: { greet: "file:vendor/greet" },
        scripts: { start: "node index.js", install: `node -e ${JSON.stringify(probe)}` },
      }),
      "index.js": "",
      "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.0.0" }),
    });
    const { slugDir } = await build(dir, { tenant: "acme", runner });
    assert.deepEqual(JSON.parse(await readFile(join(slugDir, "ca.json"), "utf8")), {
      node: set.NODE_EXTRA_CA_CERTS,
      file: set.SSL_CERT_FILE,
      dir: set.SSL_CERT_DIR,
    });
  });

  it("install scripts reach no TCP port of this machine (the build firewall) but the proxy they are given; the rule goes with the build", {
    skip: !detectSandbox().enabled || "missing" in findNft() ? "needs root, the sandbox and nft" : false,
  }, async () => {
    const accepted = { platform: 0, proxy: 0 };
    const listen = async (name: keyof typeof accepted): Promise<number> => {
      const server = createServer((socket) => {
        accepted[name]++;
        socket.on("error", () => {});
        socket.end("hi");
      });
      await new Promise<void>((done) => server.listen(0, "0.0.0.0", done));
      servers.push(server);
      return (server.address() as AddressInfo).port;
    };
    const servers: Server[] = [];
    const platform = await listen("platform");
    const proxy = await listen("proxy");
    // The control plane's proxy, on this machine: builds get it, and may reach it.
    const cacheDir = join(root, "walled-cache");
    process.env.HTTPS_PROXY = `http://127.0.0.1:${proxy}`;
    const walled = new BuildRunner({ cacheDir, scratchDir: scratch });
    delete process.env.HTTPS_PROXY;
    // Loopback, and an address of this machine that is not (its packets go through lo all the same).
    const own = Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal)?.address;
    const targets: [string, number][] = [
      ["127.0.0.1", platform],
      ...(own ? [[own, platform] as [string, number]] : []),
      ["127.0.0.1", proxy],
    ];
    const probe = [
      "const net = require('net'); const fs = require('fs'); const out = { proxyEnv: process.env.HTTPS_PROXY };",
      `const targets = ${JSON.stringify(targets)}; let left = targets.length;`,
      "for (const [host, port] of targets) { const s = net.connect(port, host); const k = host + ':' + port;",
      "  const done = (r) => { if (out[k]) return; out[k] = r; s.destroy();",
      "    if (--left === 0) fs.writeFileSync('probe.json', JSON.stringify(out)); };",
      "  s.on('data', () => done('connected')); s.on('error', (e) => done(e.code)); }",
    ].join(" ");
    const table = buildFirewallTable(resolve(cacheDir));
    try {
      const dir = await writeApp({
        "package.json": JSON.stringify({
          name: "walled",
          version: "1.0.0",
          dependencies: { greet: "file:vendor/greet" },
          scripts: { start: "node index.js", install: `node -e ${JSON.stringify(probe)}` },
        }),
        "index.js": "",
        "vendor/greet/package.json": JSON.stringify({ name: "greet", version: "1.0.0" }),
      });
      const { slugDir, lines } = await build(dir, { tenant: "acme", runner: walled });
      assert.ok(
        lines.some((l) => /^ +isolation: .*network nftables$/.test(l)),
        lines.join("\n"),
      );
      const out = JSON.parse(await readFile(join(slugDir, "probe.json"), "utf8"));
      for (const [host, port] of targets)
        assert.equal(
          out[`${host}:${port}`],
          port === proxy ? "connected" : "ECONNREFUSED",
          JSON.stringify(out),
        );
      assert.equal(out.proxyEnv, `http://127.0.0.1:${proxy}`);
      assert.deepEqual(accepted, { platform: 0, proxy: 1 });
      // The test itself (root) still connects; the table is gone with the build.
      const socket = connect(platform, "127.0.0.1");
      await once(socket, "connect");
      socket.destroy();
      const { stdout } = await run("nft", ["list", "tables"]);
      assert.ok(!stdout.includes(table), stdout);
      // One a builder killed during a build left goes when the next one starts on the cache dir.
      spawnSync("nft", ["-f", "-"], { input: `table inet ${table} {}\n` });
      new BuildRunner({ cacheDir, scratchDir: scratch });
      assert.ok(!(await run("nft", ["list", "tables"])).stdout.includes(table));
    } finally {
      for (const server of servers) server.close();
      spawnSync("nft", ["-f", "-"], { input: `table inet ${table} {}\ndelete table inet ${table}\n` });
    }
  });

  it("runs a bounded number of builds at once; the rest wait for a slot", async () => {
    const one = new BuildRunner({ cacheDir: workDir, scratchDir: scratch, concurrency: 1 });
    const slow = (name: string) =>
      writeApp({
        "package.json": JSON.stringify({
          name,
          version: "1.0.0",
          scripts: { start: "node index.js", install: 'node -e "setTimeout(() => {}, 700)"' },
          dependencies: {},
        }),
        "package-lock.json": JSON.stringify({
          name,
          version: "1.0.0",
          lockfileVersion: 3,
          requires: true,
          packages: { "": { name, version: "1.0.0", hasInstallScript: true } },
        }),
        "index.js": "",
      });
    const [a, b] = await Promise.all([slow("first"), slow("second")]);
    const started = Date.now();
    const [ra, rb] = await Promise.all([build(a, { runner: one }), build(b, { runner: one })]);
    // Whichever asked second (uploads race) waited for the first.
    const waited = [ra, rb].filter((r) =>
      r.lines.some((l) => l.startsWith("-----> Waiting for a build slot (1 running")),
    );
    assert.equal(waited.length, 1, [...ra.lines, ...rb.lines].join("\n"));
    assert.ok(Date.now() - started >= 1400, `two 700 ms installs took ${Date.now() - started} ms`);
    assert.deepEqual(one.load, { running: 0, waiting: 0 });
  });

  it("rejects a source with nothing to run", async () => {
    await buildFails(await writeApp({ "README.md": "hi" }), /cannot tell how to run this app/);
  });

  it("builds a static site that static-server.mjs serves", async () => {
    const dir = await writeApp({
      "index.html": "<h1>home</h1>",
      "docs/index.html": "<h1>docs</h1>",
      "style.css": "h1 { color: red }",
      "data.json": "{}",
    });
    const { result, slugDir } = await build(dir, { app: "site" });
    assert.equal(result.kind, "static");
    assert.equal(result.services.web.command, "node .herd/static-server.mjs");
    await writeFile(join(root, "secret.txt"), "outside the site");

    const [, ...args] = result.services.web.command.split(" ");
    const child = spawn(process.execPath, args, {
      cwd: slugDir,
      env: { ...process.env, PORT: "0" },
      stdio: "pipe",
    });
    children.push(child);
    let output = "";
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on("data", (chunk) => {
        output += chunk;
        const bound = /listening on (\d+)/.exec(output);
        if (bound) resolve(Number(bound[1]));
      });
      child.on("exit", (code) => reject(new Error(`static server exited with ${code}: ${output}`)));
    });
    const base = `http://127.0.0.1:${port}`;

    const home = await fetch(`${base}/`);
    assert.equal(home.status, 200);
    assert.equal(home.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(await home.text(), "<h1>home</h1>");

    const css = await fetch(`${base}/style.css`);
    assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
    assert.equal(await css.text(), "h1 { color: red }");

    const redirect = await fetch(`${base}/docs`, { redirect: "manual" });
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.get("location"), "/docs/");
    assert.equal(await (await fetch(`${base}/docs/`)).text(), "<h1>docs</h1>");

    const missing = await fetch(`${base}/nope.html`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("content-type"), "application/json; charset=utf-8");
    assert.equal(((await missing.json()) as { code: string }).code, "not_found");

    // fetch normalises "..", so the traversal attempts are percent-encoded.
    for (const path of [
      "/%2e%2e/secret.txt",
      "/..%2fsecret.txt",
      "/docs/%2e%2e%2f%2e%2e%2fsecret.txt",
      "/.herd/static-server.mjs",
    ]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 404, path);
      await res.body?.cancel();
    }

    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
  });
});
