/**
 * App detection: what an unpacked source directory runs, and under which app
 * name. herd.yaml's `services:` says it outright; without them (or without a
 * herd.yaml), herd looks (in this order) for a Procfile, a package.json start
 * script (or, as `npm start` does without one, a server.js: `node server.js`),
 * and an index.html. A herd.yaml service without a command takes what was
 * detected for its name (its Procfile line, the start script or the static
 * server for web), else the start script.
 */

import { readFile, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { HerdError } from "../common/errors.ts";
import { foldAppJobs } from "../model/job.ts";
import {
  type Manifest,
  NAME_PATTERN,
  normalizeService,
  parseManifest,
  type ServiceSpec,
} from "../model/manifest.ts";
import type { Resources } from "../model/objects.ts";

/** Where the services of an app came from. */
export type AppKind = "manifest" | "node" | "procfile" | "static";

/** What a source directory runs: the app name, how it was found, and each service's spec. */
export interface AppDefinition {
  app: string;
  kind: AppKind;
  services: Record<string, ServiceSpec>;
  /** herd.yaml's `alerts:` rules, deployed with the release. */
  alerts?: Manifest["alerts"];
}

/** What runs an app whose only clue is a server.js (npm start's default). */
export const SERVER_JS_COMMAND = "node server.js";

/** The command of a static site's web service; the builder puts the server there. */
export const STATIC_SERVER_COMMAND = "node .herd/static-server.mjs";

const NAME = new RegExp(NAME_PATTERN);
const NAME_RULE = "lowercase letters, digits and dashes, starting with a letter, at most 40 characters";

/**
 * Reads the app definition of the source in `dir`. The app name is
 * options.app, else herd.yaml's `app`, else package.json's name, else the
 * directory's name (the last two made valid where possible). Fails with
 * HerdError("invalid") when nothing runnable is found, when herd.yaml is
 * wrong (the message names the file, field and line), or when no valid name
 * can be made.
 */
export async function loadAppDefinition(
  dir: string,
  options: { app?: string; unit?: Resources } = {},
): Promise<AppDefinition> {
  const manifestFile = (await exists(join(dir, "herd.yaml"))) ? "herd.yaml" : "herd.yml";
  const manifestText = await readOptional(join(dir, manifestFile));
  const pkg = await readPackageJson(dir);
  const procfileText = await readOptional(join(dir, "Procfile"));
  const procfile = procfileText === undefined ? undefined : parseProcfile(procfileText);
  // npm's own default: without a start script, `npm start` runs `node server.js` when there is one.
  const startScript =
    typeof pkg?.scripts?.start === "string" && pkg.scripts.start.trim()
      ? pkg.scripts.start
      : (await exists(join(dir, "server.js")))
        ? SERVER_JS_COMMAND
        : undefined;

  const detected = await detectCommands(dir, procfile, startScript);
  // A herd.yaml without `services:` has the detected ones (its release, jobs and alerts apply to them).
  const manifest =
    manifestText === undefined
      ? undefined
      : parseManifest(
          manifestText,
          manifestFile,
          detected &&
            Object.fromEntries([...detected.commands].map(([name, command]) => [name, { command }])),
        );
  const app = chooseAppName(dir, options.app, manifest, pkg);

  if (manifest) {
    const services: Record<string, ServiceSpec> = {};
    for (const [name, service] of Object.entries(manifest.services)) {
      services[name] = normalizeService(
        app,
        name,
        service,
        detected?.commands.get(name) ?? startScript,
        options.unit,
      );
    }
    return {
      app,
      // A static site's server is put in place by the builder, herd.yaml or not.
      kind:
        detected?.kind === "static" && services.web?.command === STATIC_SERVER_COMMAND
          ? "static"
          : "manifest",
      services: foldAppJobs(manifest, services),
      ...(manifest.alerts ? { alerts: manifest.alerts } : {}),
    };
  }
  if (detected)
    return { app, kind: detected.kind, services: fromCommands(app, detected.commands, options.unit) };
  throw new HerdError(
    "invalid",
    "cannot tell how to run this app: found no herd.yaml (or herd.yml), no Procfile, no package.json with a " +
      "start script, no server.js and no index.html; add a herd.yaml that gives each service a command, or one of the others",
  );
}

/**
 * What runs without herd.yaml's word: a Procfile names every process type, so
 * it wins over the single start script (as on Heroku); then the start script
 * (or server.js); then an index.html, served as a static site.
 */
async function detectCommands(
  dir: string,
  procfile: Map<string, string> | undefined,
  startScript: string | undefined,
): Promise<{ kind: Exclude<AppKind, "manifest">; commands: Map<string, string> } | undefined> {
  if (procfile && procfile.size > 0) {
    const commands = new Map(procfile);
    if (!commands.has("web") && startScript) commands.set("web", startScript);
    return { kind: "procfile", commands };
  }
  if (startScript) return { kind: "node", commands: new Map([["web", startScript]]) };
  if (await exists(join(dir, "index.html")))
    return { kind: "static", commands: new Map([["web", STATIC_SERVER_COMMAND]]) };
  return undefined;
}

interface PackageJson {
  name?: unknown;
  scripts?: { start?: unknown };
}

function fromCommands(
  app: string,
  commands: Map<string, string>,
  unit: Resources | undefined,
): Record<string, ServiceSpec> {
  const services: Record<string, ServiceSpec> = {};
  for (const [name, command] of commands)
    services[name] = normalizeService(app, name, { command }, undefined, unit);
  return services;
}

function chooseAppName(
  dir: string,
  explicit: string | undefined,
  manifest: Manifest | undefined,
  pkg: PackageJson | undefined,
): string {
  if (explicit !== undefined) {
    if (!NAME.test(explicit))
      throw new HerdError("invalid", `app name ${JSON.stringify(explicit)} is not valid (${NAME_RULE})`);
    return explicit;
  }
  if (manifest?.app) return manifest.app;
  const [source, raw] =
    typeof pkg?.name === "string" && pkg.name
      ? ["package.json name", pkg.name]
      : ["directory name", basename(resolve(dir))];
  const name = sanitizeName(raw);
  if (!name) {
    throw new HerdError(
      "invalid",
      `cannot make an app name from the ${source} ${JSON.stringify(raw)}: set app in herd.yaml or pass an app name (${NAME_RULE})`,
    );
  }
  return name;
}

/** Turns e.g. "@acme/My_App" into "my-app"; "" when nothing valid is left. */
function sanitizeName(raw: string): string {
  const name = raw
    .replace(/^@[^/]*\//, "")
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^[^a-z]+/, "")
    .slice(0, 40)
    .replace(/-+$/, "");
  return NAME.test(name) ? name : "";
}

/** Parses `name: command` lines; blank lines and # comments are skipped. */
function parseProcfile(text: string): Map<string, string> {
  const commands = new Map<string, string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([^:\s]+)\s*:\s*(.*)$/.exec(line);
    const where = `Procfile:${i + 1}`;
    if (!match) {
      throw new HerdError("invalid", `${where}: expected "name: command", got ${JSON.stringify(line)}`, [
        { field: "Procfile", message: 'expected "name: command"', line: i + 1 },
      ]);
    }
    const [, name, command] = match;
    const problem = !NAME.test(name)
      ? `process name ${name} is not valid (${NAME_RULE})`
      : command === ""
        ? `process ${name} has no command`
        : commands.has(name)
          ? `process ${name} is listed twice`
          : undefined;
    if (problem)
      throw new HerdError("invalid", `${where}: ${problem}`, [
        { field: `Procfile.${name}`, message: problem, line: i + 1 },
      ]);
    commands.set(name, command);
  }
  return commands;
}

async function readPackageJson(dir: string): Promise<PackageJson | undefined> {
  const text = await readOptional(join(dir, "package.json"));
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("not an object");
    return value as PackageJson;
  } catch (err) {
    throw new HerdError("invalid", `package.json is not valid JSON: ${(err as Error).message}`, [
      { field: "package.json", message: (err as Error).message },
    ]);
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}
