/**
 * Where the CLI finds the control plane: flags, then HERD_SERVER / HERD_TOKEN,
 * then the chosen context of the user-level config (`herd login` and `herd up`
 * write it), then the local data dir that `herd up` / `herd server` writes.
 * The tenant and the CA come the same way.
 *
 *   --server/--token/--tenant/--ca ─► HERD_SERVER/HERD_TOKEN/HERD_TENANT/HERD_CA ─► context ─► data dir
 *   user config = $XDG_CONFIG_HOME/herd/config.json, else ~/.config/herd/config.json (0600)
 *     { "current": "prod",
 *       "contexts": { "prod":  { "server": "https://herd.example.com", "token": "herd_pat_…", "tenant": "shop" },
 *                     "local": { "server": "http://127.0.0.1:7070", "token": "…", "dataDir": "/src/app/.herd" } } }
 *   context = --context NAME, else HERD_CONTEXT, else "current"
 *   data dir = $HERD_DATA, else the nearest ./.herd (walking up), else ~/.herd
 *   data dir/server.json  { "url": "http://127.0.0.1:7070", "gatewayUrl": "…" }
 *   data dir/admin-token  the token text
 *   data dir/tls/ca-cert.pem  the CA of an https server (else --ca, HERD_CA or the context's names the file)
 *
 * A token (or default tenant, or CA) from a context or the data dir is used
 * only for the server it belongs to.
 */

import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";

/** What the CLI needs to reach the control plane. */
export interface ServerConfig {
  /** Base URL without /api/v1, e.g. http://127.0.0.1:7070 */
  url: string;
  token: string;
  /** The gateway's URL when the data dir names it. */
  gatewayUrl?: string;
  /** Where the url came from, for error messages: "--server", "HERD_SERVER" or a file's path. */
  source: string;
  /** The CA certificate file an https server's certificate is checked against. */
  ca?: string;
  /** Where the CA file's name came from: "--ca", "HERD_CA", a context or the data dir. */
  caSource?: string;
  /** The saved context in use, when one is. */
  context?: string;
  /** Where the token came from: "--token", "HERD_TOKEN" or a file's path. */
  tokenSource: string;
  /** The tenant to act in (sent as ?tenant=), when one is named. */
  tenant?: string;
}

/** Inputs of the lookup, passed in so tests can control them. */
export interface ConfigSources {
  server?: string;
  token?: string;
  tenant?: string;
  /** --ca: the CA file an https server's certificate is checked against. */
  ca?: string;
  /** --context: the saved context to use instead of the current one. */
  context?: string;
  env: Record<string, string | undefined>;
  cwd: string;
  home?: string;
}

/** The message when no server can be found at all. */
export const NO_SERVER_MESSAGE =
  "no herd server found: run `herd up` here, sign in with `herd login --server URL`, or pass --server/HERD_SERVER and --token/HERD_TOKEN";

/** One named context: a server, a token for it, and what goes with them. */
export interface SavedContext {
  server: string;
  token: string;
  /** The tenant commands act in when none is named. */
  tenant?: string;
  /** The CA file an https server's certificate is checked against (--ca or HERD_CA at login). */
  ca?: string;
  /** Who the token stands for (`user alice`), as the server said when it was saved. */
  user?: string;
  /** The data dir of the `herd up` that wrote it; absent in a context `herd login` wrote. */
  dataDir?: string;
}

/** The user-level config: named contexts and the current one (as kubectl's contexts). */
export interface UserConfig {
  current?: string;
  contexts: Record<string, SavedContext>;
}

/** The context `herd up` saves for its own server. */
export const LOCAL_CONTEXT = "local";

const CONTEXT_NAME = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$/;

/** Checks a context name given by a person; an Error saying what a name may hold otherwise. */
export function checkContextName(name: string): string {
  if (!CONTEXT_NAME.test(name)) {
    throw new Error(
      `${JSON.stringify(name)} is not a context name: letters, digits and . _ : @ -, starting with a letter or digit, at most 100`,
    );
  }
  return name;
}

/** The name `herd login` gives a server's context unless told one: its host and port (`herd.example.com`, `127.0.0.1:7070`). */
export function contextNameFor(server: string): string {
  return new URL(server.split(",")[0]).host;
}

/** The login config's path: `$XDG_CONFIG_HOME/herd/config.json`, else `~/.config/herd/config.json`. */
export function userConfigPath(sources: Pick<ConfigSources, "env" | "home">): string {
  const xdg = sources.env.XDG_CONFIG_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(sources.home ?? homedir(), ".config");
  return join(base, "herd", "config.json");
}

/**
 * The user-level config, or undefined when there is none. The file of older
 * herds (one `{server, token, tenant?, ca?}`) reads as one context named after
 * its server, current; it is rewritten in the new form on the next save. A
 * damaged file is an error that names it and says what to do.
 */
export async function readUserConfig(file: string): Promise<UserConfig | undefined> {
  const text = await readText(file);
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message}); sign in again with \`herd login\``);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${file}: expected a JSON object; sign in again with \`herd login\``);
  }
  const raw = parsed as Record<string, unknown>;
  if (!("contexts" in raw)) {
    // herd before contexts: the file was the one login.
    const only = savedContext(raw, file, "");
    const name = contextNameFor(only.server);
    return { current: name, contexts: { [name]: only } };
  }
  if (typeof raw.contexts !== "object" || raw.contexts === null || Array.isArray(raw.contexts)) {
    throw new Error(`${file}: "contexts" must be an object; sign in again with \`herd login\``);
  }
  const contexts: Record<string, SavedContext> = {};
  for (const [name, value] of Object.entries(raw.contexts)) {
    contexts[name] = savedContext(value, file, name);
  }
  const current = typeof raw.current === "string" && raw.current in contexts ? raw.current : undefined;
  return { ...(current ? { current } : {}), contexts };
}

function savedContext(value: unknown, file: string, name: string): SavedContext {
  const v = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const { server, token } = v;
  if (typeof server !== "string" || typeof token !== "string" || !/^https?:\/\//.test(server)) {
    const what = name ? `context ${name}` : "the login";
    const fix = name
      ? `herd context delete ${name}, or sign in again with \`herd login --context ${name}\``
      : "sign in again with `herd login`";
    throw new Error(`${file}: ${what} needs "server" (an http(s) URL) and "token"; ${fix}`);
  }
  const text = (key: string) => (typeof v[key] === "string" && v[key] ? { [key]: v[key] as string } : {});
  return { server, token, ...text("tenant"), ...text("ca"), ...text("user"), ...text("dataDir") };
}

/**
 * Saves the user-level config readable by its owner only: the directory 0700,
 * the file 0600, written whole to a temporary file and renamed over the old
 * one. A config without contexts removes the file.
 */
export async function writeUserConfig(file: string, config: UserConfig): Promise<void> {
  if (Object.keys(config.contexts).length === 0) {
    await removeUserConfig(file);
    return;
  }
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    // The current context first: what a person opening the file looks for.
    const ordered = { ...(config.current ? { current: config.current } : {}), contexts: config.contexts };
    await writeFile(tmp, `${JSON.stringify(ordered, null, 2)}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Removes the user-level config; false when there was none. */
export async function removeUserConfig(file: string): Promise<boolean> {
  try {
    await rm(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** `no context NAME; the contexts: a, b` — or how to make one when there are none. */
export function noSuchContext(name: string, config: UserConfig | undefined): Error {
  const names = Object.keys(config?.contexts ?? {});
  return new Error(
    names.length > 0
      ? `no context ${name}; the contexts are: ${names.join(", ")}`
      : `no context ${name}: none is saved yet (\`herd up\` saves one for its server, \`herd login --server URL\` one for any server)`,
  );
}

/**
 * The context commands use: the one named (--context or HERD_CONTEXT; an
 * error naming the others when there is no such context), else the current
 * one; undefined when neither.
 */
export function selectContext(
  config: UserConfig | undefined,
  named: string | undefined,
): { name: string; context: SavedContext } | undefined {
  if (named !== undefined) {
    const context = config?.contexts[named];
    if (!context) throw noSuchContext(named, config);
    return { name: named, context };
  }
  if (config?.current === undefined) return undefined;
  return { name: config.current, context: config.contexts[config.current] };
}

/** What `herd up` did with the CLI's config (saveLocalContext). */
export interface LocalSignIn {
  /** The context it wrote; undefined when it wrote none. */
  name?: string;
  /** Whether that context is the current one now. */
  current: boolean;
  /** The current context when it is another one (a context the user chose is left alone). */
  other?: string;
  /** Why nothing was written, when nothing was. */
  skipped?: string;
}

/**
 * Signs the CLI in to the server `herd up` runs: saves the context `local`
 * (the server, its admin token, its CA) and makes it current when there is no
 * current context or it was already current. A `local` context that `herd
 * login` wrote (no dataDir) is the user's: it is left as it is.
 */
export async function saveLocalContext(
  file: string,
  local: { server: string; token: string; dataDir: string; ca?: string },
): Promise<LocalSignIn> {
  const config = (await readUserConfig(file)) ?? { contexts: {} };
  const name = LOCAL_CONTEXT;
  const existing = config.contexts[name];
  if (existing && existing.dataDir === undefined) {
    return {
      current: config.current === name,
      skipped: `the context ${name} is one you saved with herd login`,
    };
  }
  config.contexts[name] = {
    server: local.server,
    token: local.token,
    ...(local.ca ? { ca: local.ca } : {}),
    user: "user admin",
    dataDir: local.dataDir,
  };
  if (config.current === undefined) config.current = name;
  await writeUserConfig(file, config);
  return {
    name,
    current: config.current === name,
    ...(config.current !== name ? { other: config.current } : {}),
  };
}

/** The shape of server.json in the data dir. */
interface ServerFile {
  url?: unknown;
  gatewayUrl?: unknown;
}

/**
 * The data dir the CLI reads: $HERD_DATA, else the first `.herd` directory in
 * `cwd` or one of its parents, else `~/.herd` (which may not exist).
 */
export async function findDataDir(sources: Pick<ConfigSources, "env" | "cwd" | "home">): Promise<string> {
  if (sources.env.HERD_DATA) return resolve(sources.cwd, sources.env.HERD_DATA);
  let dir = resolve(sources.cwd);
  for (;;) {
    const candidate = join(dir, ".herd");
    if (await isDirectory(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return join(sources.home ?? homedir(), ".herd");
}

/** The context commands use (--context, HERD_CONTEXT, else the current one) and where it is, for messages. */
export async function chosenContext(
  sources: ConfigSources,
): Promise<{ name: string; context: SavedContext; source: string } | undefined> {
  const file = userConfigPath(sources);
  const named = sources.context || sources.env.HERD_CONTEXT || undefined;
  const selected = selectContext(await readUserConfig(file), named);
  return selected && { ...selected, source: `context ${selected.name} in ${file}` };
}

/**
 * The server `herd login` signs in to: --server, HERD_SERVER, the chosen
 * context's, else the data dir's server.json; undefined when none is known.
 */
export async function loginServerUrl(sources: ConfigSources): Promise<string | undefined> {
  const url =
    sources.server ||
    sources.env.HERD_SERVER ||
    // A damaged config is about to be replaced: it does not stop a new login.
    (await chosenContext(sources).catch(() => undefined))?.context.server ||
    (await readServerFile(join(await findDataDir(sources), "server.json")))?.url;
  if (url && !/^https?:\/\//.test(url)) throw new Error(`not an http(s) URL: ${url}`);
  return url?.replace(/\/+$/, "");
}

/**
 * The CA file an https server's certificate is checked against, and where
 * its name came from: --ca, else HERD_CA, else the context's (for its own
 * server), else the data dir's `tls/ca-cert.pem` (for the data dir's own
 * server, api/tls.ts); undefined for a publicly signed one.
 */
export async function caFileFor(
  sources: ConfigSources,
  url: string,
  context?: { name: string; context: SavedContext },
): Promise<{ file: string; source: string } | undefined> {
  if (sources.ca) return { file: resolve(sources.cwd, sources.ca), source: "--ca" };
  if (sources.env.HERD_CA) return { file: resolve(sources.cwd, sources.env.HERD_CA), source: "HERD_CA" };
  if (!url.startsWith("https:")) return undefined;
  if (context?.context.ca && sameServer(url, context.context.server)) {
    return { file: context.context.ca, source: `context ${context.name}'s CA` };
  }
  const dataDir = await findDataDir(sources);
  const local = await readServerFile(join(dataDir, "server.json"));
  const localCa = join(dataDir, "tls", "ca-cert.pem");
  if (local && sameServer(url, local.url) && (await readText(localCa))) {
    return { file: localCa, source: "the data dir's CA" };
  }
  return undefined;
}

/**
 * Resolves the server URL, token and tenant, each independently: flag, then
 * environment, then the chosen context, then the data dir. Throws with a
 * message saying what to do when the URL or token is missing.
 */
export async function resolveServerConfig(sources: ConfigSources): Promise<ServerConfig> {
  let url = sources.server || sources.env.HERD_SERVER || undefined;
  let source = sources.server ? "--server" : "HERD_SERVER";
  let token = sources.token || sources.env.HERD_TOKEN || undefined;
  let tokenSource = sources.token ? "--token" : "HERD_TOKEN";
  let tenant = sources.tenant || sources.env.HERD_TENANT || undefined;
  let gatewayUrl: string | undefined;

  const chosen = await chosenContext(sources);
  let usedContext: string | undefined;
  if (chosen) {
    const { context } = chosen;
    if (!url) {
      url = context.server;
      source = chosen.source;
    }
    // A context's token and tenant belong to its own server only.
    if (sameServer(url, context.server)) {
      usedContext = chosen.name;
      if (!token) {
        token = context.token;
        tokenSource = chosen.source;
      }
      tenant ??= context.tenant;
    }
  }

  const dataDir = await findDataDir(sources);
  const serverFile = join(dataDir, "server.json");
  const local = await readServerFile(serverFile);
  if (local) {
    // The data dir's gateway belongs to its own server only.
    if (!url || sameServer(url, local.url)) gatewayUrl = local.gatewayUrl;
    if (!url) {
      url = local.url;
      source = serverFile;
    }
  }
  if (!url) throw new Error(NO_SERVER_MESSAGE);
  if (!/^https?:\/\//.test(url)) throw new Error(`${source}: not an http(s) URL: ${url}`);

  const tokenFile = join(dataDir, "admin-token");
  if (!token && local && sameServer(url, local.url)) {
    token = await readText(tokenFile);
    tokenSource = tokenFile;
  }
  if (!token) {
    throw new Error(
      `no token for the herd server at ${url}: sign in with \`herd login --server ${url}\`, or pass --token or HERD_TOKEN (on the server's machine, \`herd up\` signs the CLI in by itself)`,
    );
  }
  const ca = await caFileFor(sources, url, chosen);
  return {
    url: url.replace(/\/+$/, ""),
    token,
    gatewayUrl,
    source,
    tokenSource,
    ...(tenant ? { tenant } : {}),
    ...(ca ? { ca: ca.file, caSource: ca.source } : {}),
    ...(usedContext ? { context: usedContext } : {}),
  };
}

async function readServerFile(file: string): Promise<{ url: string; gatewayUrl?: string } | undefined> {
  const text = await readText(file);
  if (text === undefined) return undefined;
  let parsed: ServerFile;
  try {
    parsed = JSON.parse(text) as ServerFile;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed?.url !== "string") throw new Error(`${file}: has no "url"`);
  return {
    url: parsed.url,
    gatewayUrl: typeof parsed.gatewayUrl === "string" ? parsed.gatewayUrl : undefined,
  };
}

/** Whether two server URLs are the same (trailing slashes aside). */
export function sameServer(a: string, b: string): boolean {
  return a.replace(/\/+$/, "") === b.replace(/\/+$/, "");
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, "utf8")).trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
