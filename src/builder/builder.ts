/**
 * The builder: turns an uploaded source (a digest in the artifact store) into
 * a slug, a tarball an agent unpacks and runs as is. Dependencies are
 * installed here, once, not on every node.
 *
 *   slot → source digest → unpack → detect → install and `npm run build` (in the build sandbox) / add static server
 *        → packAll → slug digest
 *
 * Installing runs the app's own code (install scripts): BuildRunner
 * (build-runner.ts) runs it as the app's build uid, in a throwaway directory
 * outside the data dir, with a clean environment and limits.
 */

import { constants, realpathSync } from "node:fs";
import { copyFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findLockfile, PACKAGES_METADATA, readInstalledPackages } from "../catalog/lockfile.ts";
import { findBinary } from "../common/debian-packages.ts";
import { HerdError } from "../common/errors.ts";
import type { SlugPackages } from "../model/catalog.ts";
import type { ServiceSpec } from "../model/manifest.ts";
import type { Resources } from "../model/objects.ts";
import type { ArtifactStore } from "./artifact-store.ts";
import { BuildRunner } from "./build-runner.ts";
import { type AppDefinition, type AppKind, loadAppDefinition } from "./detect.ts";
import { NODE_REF_FILE, type NodeRef, type NodeRuntime, NodeRuntimes } from "./node-runtime.ts";
import { packAll } from "./pack.ts";
import { type UnpackLimits, unpackTarball } from "./unpack.ts";

/** What buildSlug needs. */
export interface BuildOptions {
  /** Where the source is and where the slug goes. */
  artifacts: ArtifactStore;
  /** Digest of the uploaded source tarball. */
  source: string;
  /**
   * The builder's own directory (root only): per-app npm caches and build
   * uids. The build itself runs in a throwaway directory of the runner's.
   */
  workDir: string;
  /** Bounds, limits and sandbox shared by the control plane's builds; default: one for this build alone. */
  runner?: BuildRunner;
  /** The Node versions apps choose (engines.node), kept for every build; default: under workDir. */
  runtimes?: NodeRuntimes;
  /** App name to use instead of the detected one. */
  app?: string;
  /** The app's tenant: its build uid and cache are its own. */
  tenant?: string;
  /** The platform's resource unit (services ask for `units` of it). */
  unit?: Resources;
  /** Receives the build log, one line at a time. */
  log: (line: string) => void;
  /** Stops the build (and any running npm) when aborted; buildSlug then rejects with the abort reason. */
  signal?: AbortSignal;
  /** Time limit for each install command; default the runner's (10 minutes). */
  timeoutMs?: number;
  /** How much the source may unpack to (the tenant's limits; defaults in unpack.ts). */
  unpack?: UnpackLimits;
  /** What the release would be refused for, checked once the services are known, before anything is installed. */
  check?: (services: Record<string, ServiceSpec>) => Promise<void>;
}

/** A finished build: the slug's digest and what it runs. */
export interface BuildResult {
  slug: string;
  app: string;
  kind: AppKind;
  services: Record<string, ServiceSpec>;
  /** herd.yaml's alert rules. */
  alerts?: AppDefinition["alerts"];
  /** The Node version engines.node chose; absent: herd's own. */
  node?: string;
  /** The npm packages the slug ships (kept beside it in the artifact store for the catalog); absent: unreadable. */
  packages?: SlugPackages;
}

/** Lines of command output kept for the error of a failed build. */
const TAIL_LINES = 20;
const STATIC_SERVER = fileURLToPath(new URL("./static-server.mjs", import.meta.url));

const DETECTED: Record<AppKind, string> = {
  manifest: "herd.yaml found",
  node: "Node app detected",
  procfile: "Procfile app detected",
  static: "Static site detected",
};

/**
 * Builds the source `options.source` into a slug stored in the same artifact
 * store. Fails with HerdError("invalid") when the source cannot be unpacked,
 * nothing runnable is detected, or installing dependencies fails or times out
 * (details hold the last lines of output).
 */
export async function buildSlug(options: BuildOptions): Promise<BuildResult> {
  const { artifacts, log, signal } = options;
  signal?.throwIfAborted();
  await mkdir(options.workDir, { recursive: true, mode: 0o700 });
  const runner = options.runner ?? new BuildRunner({ cacheDir: options.workDir });
  const { running, waiting } = runner.load;
  if (waiting > 0 || running > 0)
    log(`-----> Waiting for a build slot (${running} running, ${waiting} waiting)`);
  const release = await runner.slot(signal);
  const buildDir = await runner.scratch().catch((err) => {
    release();
    throw err;
  });
  const appDir = join(buildDir, "app");
  try {
    log(`-----> Unpacking source ${options.source.slice(0, 12)}`);
    await unpackTarball(await artifacts.path(options.source), appDir, options.unpack);
    // .herd/ in a slug is herd's (the static server, the Node reference); `herd deploy` never sends one.
    await rm(join(appDir, ".herd"), { recursive: true, force: true });

    const definition = await loadAppDefinition(appDir, { app: options.app, unit: options.unit });
    log(
      `-----> ${DETECTED[definition.kind]}: app ${definition.app}, services ${Object.keys(definition.services).join(", ")}`,
    );
    await options.check?.(definition.services);

    signal?.throwIfAborted();
    const runtimes = options.runtimes ?? new NodeRuntimes({ dir: join(options.workDir, "node") });
    const node = await chooseNode(appDir, runtimes, options);
    const lockfile = await findLockfile(appDir);
    await installAndBuild(appDir, definition.app, runner, options, node);
    const packages = await recordedPackages(appDir, lockfile, log);
    // The install scripts ran in appDir as the app's uid: what they left at .herd (a link to /etc, a
    // link named node.json) goes, and herd's own files are made new (never through a link: mkdir
    // without recursive, O_EXCL), as root would otherwise write wherever such a link pointed.
    await rm(join(appDir, ".herd"), { recursive: true, force: true });
    if (node || definition.kind === "static") await mkdir(join(appDir, ".herd"), { mode: 0o755 });
    if (node) {
      const ref: NodeRef = { version: node.version, platform: node.platform, digest: node.digest };
      await writeFile(join(appDir, NODE_REF_FILE), `${JSON.stringify(ref)}\n`, { flag: "wx" });
    }

    if (definition.kind === "static") {
      log("-----> Adding the static file server as .herd/static-server.mjs");
      await copyFile(STATIC_SERVER, join(appDir, ".herd", "static-server.mjs"), constants.COPYFILE_EXCL);
    }

    signal?.throwIfAborted();
    const packed = await packAll(appDir);
    try {
      log(`-----> Compressing slug: ${packed.files} files, ${formatSize(packed.size)}`);
      const stored = await artifacts.putFile(packed.file);
      // Before the release exists: a slug that a release names always has its packages beside it.
      if (packages) await artifacts.putMetadata(stored.digest, PACKAGES_METADATA, packages);
      for (const [name, spec] of Object.entries(definition.services)) log(`       ${name}: ${spec.command}`);
      log(`-----> Slug ${stored.digest.slice(0, 12)} ready`);
      return {
        slug: stored.digest,
        ...definition,
        ...(node ? { node: node.version } : {}),
        ...(packages ? { packages } : {}),
      };
    } finally {
      await rm(packed.file, { force: true });
    }
  } finally {
    await rm(buildDir, { recursive: true, force: true });
    release();
  }
}

/**
 * The packages npm installed, for the catalog. A lockfile herd cannot read is
 * a warning, not a failed build: the catalog then says "packages unknown".
 */
async function recordedPackages(
  appDir: string,
  lockfile: string | null,
  log: (line: string) => void,
): Promise<SlugPackages | undefined> {
  const { problem, ...packages } = await readInstalledPackages(appDir, lockfile);
  if (problem) {
    log(`       warning: the catalog cannot list this slug's packages: ${problem}`);
    return undefined;
  }
  if (packages.from)
    log(
      `-----> Recorded ${packages.packages.length} package${packages.packages.length === 1 ? "" : "s"} from ${packages.from} for the catalog`,
    );
  return packages;
}

/**
 * The Node the app asked for with package.json's engines.node, resolved and
 * fetched (or found on this server); undefined: herd's own Node.
 */
async function chooseNode(
  appDir: string,
  runtimes: NodeRuntimes,
  options: BuildOptions,
): Promise<NodeRuntime | undefined> {
  const pkgText = await readFile(join(appDir, "package.json"), "utf8").catch(() => undefined);
  // detect.ts has already rejected a package.json that is not a JSON object.
  const engines = pkgText === undefined ? undefined : (JSON.parse(pkgText) as { engines?: unknown }).engines;
  const range =
    typeof engines === "object" && engines !== null ? (engines as { node?: unknown }).node : undefined;
  if (range === undefined) {
    options.log(`-----> Node ${process.version}, herd's own (package.json's engines.node chooses another)`);
    return undefined;
  }
  if (typeof range !== "string") {
    throw new HerdError("invalid", "engines.node in package.json must be a string (a semver range)", [
      { field: "engines.node", message: `is ${JSON.stringify(range)}` },
    ]);
  }
  const { version, offline } = await runtimes.resolve(range, options.signal);
  const from = offline ? ", from npm's cache: the registry cannot be reached" : "";
  options.log(`-----> Node v${version} (engines.node ${JSON.stringify(range)}${from})`);
  return runtimes.ensure(version, { log: options.log, signal: options.signal });
}

/**
 * npm ci with a lockfile, npm install without (nothing when there is nothing
 * to install); then package.json's `build` script (or `herd-build`, which
 * wins), as Heroku's Node buildpack runs `build` (or `heroku-postbuild`). A
 * build needs the devDependencies (a compiler, a bundler): with a build
 * script they are installed, and pruned once it has run, so the slug ships
 * what `--omit=dev` would have installed.
 */
async function installAndBuild(
  appDir: string,
  app: string,
  runner: BuildRunner,
  options: BuildOptions,
  node: NodeRuntime | undefined,
): Promise<void> {
  const pkgText = await readFile(join(appDir, "package.json"), "utf8").catch(() => undefined);
  if (pkgText === undefined) return;
  // detect.ts has already rejected a package.json that is not a JSON object.
  const pkg = JSON.parse(pkgText) as {
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
    scripts?: Record<string, unknown>;
  };
  const hasLock =
    (await isFile(join(appDir, "package-lock.json"))) || (await isFile(join(appDir, "npm-shrinkwrap.json")));
  // `herd-build` runs instead of `build` when there is one (as Heroku's `heroku-postbuild`); an empty one builds nothing.
  const script = pkg.scripts?.["herd-build"] !== undefined ? "herd-build" : "build";
  const body = pkg.scripts?.[script];
  const build = typeof body === "string" && body.trim() !== "";
  const install =
    hasLock ||
    Object.keys(pkg.dependencies ?? {}).length > 0 ||
    (build && Object.keys(pkg.devDependencies ?? {}).length > 0);
  if (!install) options.log("-----> No dependencies to install");
  if (!install && !build) return;
  const isolation = runner.isolation();
  const npm = await npmCommand(node);
  const say = (line: string) => options.log(line);
  let said = false;
  const isolated = () => {
    if (said) return;
    said = true;
    say(
      `       isolation: sandbox ${isolation.sandbox}, cgroups ${isolation.cgroups}, network ${isolation.network}`,
    );
    for (const missing of isolation.missing) say(`       warning: no build ${missing}`);
    if (node) say(`       install scripts run on Node v${node.version}`);
  };
  if (install) {
    const how = hasLock ? "ci" : "install";
    say(
      `-----> Installing dependencies with npm ${how}${build ? " (devDependencies too, for the build)" : ""}`,
    );
    isolated();
    // The build env says NODE_ENV=production (as Heroku's), under which npm leaves dev packages out unless told.
    const omit = build ? ["--include=dev"] : ["--omit=dev"];
    await runNpm(npm, [how, ...omit, "--no-audit", "--no-fund"], appDir, app, runner, options, node?.dir);
  }
  if (!build) return;
  say(`-----> Building with npm run ${script}`);
  isolated();
  await runNpm(npm, ["run", script], appDir, app, runner, options, node?.dir);
  if (install) {
    say("-----> Pruning devDependencies");
    await runNpm(
      npm,
      ["prune", "--omit=dev", "--no-audit", "--no-fund"],
      appDir,
      app,
      runner,
      options,
      node?.dir,
    );
  }
}

/** How npm is started: herd's own, or (engines.node) on herd's Node with the app's Node first in PATH. */
async function npmCommand(node: NodeRuntime | undefined): Promise<string> {
  if (!node) return "npm";
  // npm itself on herd's Node (any npm runs there); install scripts and native builds on the app's, first in PATH.
  const npm = findBinary("npm");
  if (!npm) throw new HerdError("unavailable", "build failed: npm is not installed on the control plane");
  return `${shellQuote(process.execPath)} ${shellQuote(realpathSync(npm))}`;
}

function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Runs npm (`command`: how to start it) through the runner, streaming its output to the log; a failure names the command. */
async function runNpm(
  command: string,
  args: string[],
  appDir: string,
  app: string,
  runner: BuildRunner,
  options: BuildOptions,
  node?: string,
): Promise<void> {
  const display = ["npm", ...args].join(" ");
  const tail: string[] = [];
  const onLine = (line: string): void => {
    options.log(`       ${line}`);
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  };
  const { code, timedOut, timeoutMs } = await runner.run({
    command,
    args,
    appDir,
    app,
    tenant: options.tenant,
    onLine,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
    node,
  });
  const details = tail.map((line) => ({ field: "build", message: line }));
  if (timedOut) {
    throw new HerdError(
      "invalid",
      `build failed: ${display} timed out after ${Math.round(timeoutMs / 1000)} s`,
      details,
    );
  }
  if (code !== 0) throw new HerdError("invalid", `build failed: ${display} exited with ${code}`, details);
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}
