/**
 * Where the CLI finds the control plane: flags, then HERD_SERVER / HERD_TOKEN,
 * then the user-level config `herd login` writes, then the local data dir that
 * `herd up` / `herd server` writes. The tenant comes the same way (--tenant,
 * HERD_TENANT, the login's default tenant).
 *
 *   --server/--token/--tenant ─► HERD_SERVER/HERD_TOKEN/HERD_TENANT ─► login config ─► data dir
 *   login config = $XDG_CONFIG_HOME/herd/config.json, else ~/.config/herd/config.json (0600)
 *                  { "server": "https://herd.example.com", "token": "herd_pat_…", "tenant": "shop" }
 *   data dir = $HERD_DATA, else the nearest ./.herd (walking up), else ~/.herd
 *   data dir/server.json  { "url": "http://127.0.0.1:7070", "gatewayUrl": "…" }
 *   data dir/admin-token  the token text
 *   data dir/tls/ca-cert.pem  the CA of an https server (else HERD_CA or the login's names the file)
 *
 * A token (or default tenant) from the login config or the data dir is used only
 * for the server it belongs to.
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
  env: Record<string, string | undefined>;
  cwd: string;
  home?: string;
}

/** The message when no server can be found at all. */
export const NO_SERVER_MESSAGE =
  "no herd server found: run `herd up` here, sign in with `herd login --server URL`, or pass --server/HERD_SERVER and --token/HERD_TOKEN";

/** What `herd login` saves: one server, a token for it, and the tenant to use by default. */
export interface UserConfig {
  server: string;
  token: string;
  tenant?: string;
  /** The CA file an https server's certificate is checked against (HERD_CA at login). */
  ca?: string;
}

/** The login config's path: `$XDG_CONFIG_HOME/herd/config.json`, else `~/.config/herd/config.json`. */
export function userConfigPath(sources: Pick<ConfigSources, "env" | "home">): string {
  const xdg = sources.env.XDG_CONFIG_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(sources.home ?? homedir(), ".config");
  return join(base, "herd", "config.json");
}

/** The login config, or undefined when there is none; a damaged one is an error that names the file. */
export async function readUserConfig(file: string): Promise<UserConfig | undefined> {
  const text = await readText(file);
  if (text === undefined) return undefined;
  let parsed: Partial<Record<keyof UserConfig, unknown>>;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message}); sign in again with \`herd login\``);
  }
  const { server, token, tenant, ca } = parsed ?? {};
  if (typeof server !== "string" || typeof token !== "string") {
    throw new Error(`${file}: needs "server" and "token"; sign in again with \`herd login\``);
  }
  return {
    server,
    token,
    ...(typeof tenant === "string" && tenant ? { tenant } : {}),
    ...(typeof ca === "string" && ca ? { ca } : {}),
  };
}

/**
 * Saves the login config readable by its owner only: the directory 0700, the
 * file 0600, written whole to a temporary file and renamed over the old one.
 */
export async function writeUserConfig(file: string, config: UserConfig): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Removes the login config; false when there was none. */
export async function removeUserConfig(file: string): Promise<boolean> {
  try {
    await rm(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
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

/**
 * The server `herd login` signs in to: --server, HERD_SERVER, the last
 * login's, else the data dir's server.json; undefined when none is known.
 */
export async function loginServerUrl(sources: ConfigSources): Promise<string | undefined> {
  const url =
    sources.server ||
    sources.env.HERD_SERVER ||
    // A damaged login config is about to be replaced: it does not stop a new login.
    (await readUserConfig(userConfigPath(sources)).catch(() => undefined))?.server ||
    (await readServerFile(join(await findDataDir(sources), "server.json")))?.url;
  if (url && !/^https?:\/\//.test(url)) throw new Error(`not an http(s) URL: ${url}`);
  return url?.replace(/\/+$/, "");
}

/**
 * The CA file an https server's certificate is checked against: HERD_CA, else
 * the login's (for its own server), else the data dir's `tls/ca-cert.pem` (for
 * the data dir's own server, api/tls.ts); undefined for a publicly signed one.
 */
export async function caFileFor(
  sources: ConfigSources,
  url: string,
  login?: UserConfig,
): Promise<string | undefined> {
  if (sources.env.HERD_CA) return resolve(sources.cwd, sources.env.HERD_CA);
  if (!url.startsWith("https:")) return undefined;
  if (login?.ca && sameServer(url, login.server)) return login.ca;
  const dataDir = await findDataDir(sources);
  const local = await readServerFile(join(dataDir, "server.json"));
  const localCa = join(dataDir, "tls", "ca-cert.pem");
  if (local && sameServer(url, local.url) && (await readText(localCa))) return localCa;
  return undefined;
}

/**
 * Resolves the server URL, token and tenant, each independently: flag, then
 * environment, then the login config, then the data dir. Throws with a message
 * saying what to do when the URL or token is missing.
 */
export async function resolveServerConfig(sources: ConfigSources): Promise<ServerConfig> {
  let url = sources.server || sources.env.HERD_SERVER || undefined;
  let source = sources.server ? "--server" : "HERD_SERVER";
  let token = sources.token || sources.env.HERD_TOKEN || undefined;
  let tokenSource = sources.token ? "--token" : "HERD_TOKEN";
  let tenant = sources.tenant || sources.env.HERD_TENANT || undefined;
  let gatewayUrl: string | undefined;

  const loginFile = userConfigPath(sources);
  const login = await readUserConfig(loginFile);
  if (login) {
    if (!url) {
      url = login.server;
      source = loginFile;
    }
    if (sameServer(url, login.server)) {
      if (!token) {
        token = login.token;
        tokenSource = loginFile;
      }
      tenant ??= login.tenant;
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
      `no token for the herd server at ${url}: sign in with \`herd login --server ${url}\`, or pass --token or HERD_TOKEN (on the server's machine the admin's is in ${tokenFile})`,
    );
  }
  const ca = await caFileFor(sources, url, login);
  return {
    url: url.replace(/\/+$/, ""),
    token,
    gatewayUrl,
    source,
    tokenSource,
    ...(tenant ? { tenant } : {}),
    ...(ca ? { ca } : {}),
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
