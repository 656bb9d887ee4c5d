/**
 * Where the CLI finds the control plane: flags, then HERD_SERVER / HERD_TOKEN,
 * then the local data dir that `herd up` / `herd server` writes.
 *
 *   --server/--token ─► HERD_SERVER/HERD_TOKEN ─► data dir
 *   data dir = $HERD_DATA, else the nearest ./.herd (walking up), else ~/.herd
 *   data dir/server.json  { "url": "http://127.0.0.1:7070", "gatewayUrl": "…" }
 *   data dir/admin-token  the token text
 *   data dir/tls/ca-cert.pem  the CA of an https server (else HERD_CA names the file)
 */

import { readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

/** What the CLI needs to reach the control plane. */
export interface ServerConfig {
  /** Base URL without /api/v1, e.g. http://127.0.0.1:7070 */
  url: string;
  token: string;
  /** The gateway's URL when the data dir names it. */
  gatewayUrl?: string;
  /** Where the url came from, for error messages: "--server", "HERD_SERVER" or a server.json path. */
  source: string;
  /** The CA certificate file an https server's certificate is checked against. */
  ca?: string;
}

/** Inputs of the lookup, passed in so tests can control them. */
export interface ConfigSources {
  server?: string;
  token?: string;
  env: Record<string, string | undefined>;
  cwd: string;
  home?: string;
}

/** The message when no server can be found at all. */
export const NO_SERVER_MESSAGE =
  "no herd server found: run `herd up` here, or pass --server/HERD_SERVER and --token/HERD_TOKEN";

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
 * Resolves the server URL and token, each independently: flag, then
 * environment, then the data dir. Throws with a message saying what to do
 * when either is missing.
 */
export async function resolveServerConfig(sources: ConfigSources): Promise<ServerConfig> {
  let url = sources.server || sources.env.HERD_SERVER || undefined;
  let source = sources.server ? "--server" : "HERD_SERVER";
  let token = sources.token || sources.env.HERD_TOKEN || undefined;
  let gatewayUrl: string | undefined;

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
  if (!token && local && sameServer(url, local.url)) token = await readText(tokenFile);
  if (!token) {
    throw new Error(
      `no token for the herd server at ${url}: pass --token or HERD_TOKEN (on the server's machine it is in ${tokenFile})`,
    );
  }
  // An https server of this data dir is signed by its CA (api/tls.ts); another one's: HERD_CA.
  let ca = sources.env.HERD_CA ? resolve(sources.cwd, sources.env.HERD_CA) : undefined;
  const localCa = join(dataDir, "tls", "ca-cert.pem");
  if (!ca && url.startsWith("https:") && local && sameServer(url, local.url) && (await readText(localCa)))
    ca = localCa;
  return { url: url.replace(/\/+$/, ""), token, gatewayUrl, source, ...(ca ? { ca } : {}) };
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

function sameServer(a: string, b: string): boolean {
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
