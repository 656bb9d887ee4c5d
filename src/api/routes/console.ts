/**
 * The web console's files (console/, built by `npm install` into console/dist),
 * served at `/` with no token: the page itself asks for one and calls /api/v1.
 *
 *   GET /assets/app-3f2a.js ─► file, gzip when asked, cached a year (the name changes with the content)
 *   GET /apps/hello         ─► index.html (the console's router shows the app), never cached
 *   GET /api/v1/nope        ─► the API's JSON 404
 *
 * Files are read once, on first use, and kept in memory with their gzip.
 */

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** Where `npm install` (scripts/build-console.ts) puts the built console. */
export const CONSOLE_DIR = join(import.meta.dirname, "../../../console/dist");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
  ".map": "application/json; charset=utf-8",
};

/** Nothing from outside the control plane: scripts, styles, images and calls are its own. */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

interface ConsoleFile {
  type: string;
  body: Buffer;
  gzip?: Buffer;
  /** Vite's hashed assets never change under their name. */
  immutable: boolean;
}

/** What a console without console/dist shows: how to build it. */
const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>herd console</title>
<p>The herd console is not built. Run <code>npm install</code> (or <code>npm run build:console</code>) in herd's checkout and reload.</p>
<p>The API is at <a href="/api/v1/openapi.json">/api/v1</a>.</p>\n`;

/** The built console, loaded from `dir` on first use. */
export class ConsoleFiles {
  readonly dir: string;
  #files: Map<string, ConsoleFile> | undefined;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The file at a URL path (`/assets/x.js`), or undefined. */
  get(path: string): ConsoleFile | undefined {
    this.#files ??= this.#load();
    return this.#files.get(path);
  }

  /** The page every deep link gets. */
  index(): ConsoleFile {
    return (
      this.get("/index.html") ?? {
        type: TYPES[".html"],
        body: Buffer.from(NOT_BUILT),
        immutable: false,
      }
    );
  }

  #load(): Map<string, ConsoleFile> {
    const files = new Map<string, ConsoleFile>();
    if (!existsSync(this.dir)) return files;
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) {
          walk(path);
          continue;
        }
        const type = TYPES[extname(name)] ?? "application/octet-stream";
        const body = readFileSync(path);
        const url = `/${relative(this.dir, path).split(sep).join("/")}`;
        const compressible = /^(text\/|application\/json|image\/svg)/.test(type) && body.length > 512;
        files.set(url, {
          type,
          body,
          ...(compressible ? { gzip: gzipSync(body, { level: 9 }) } : {}),
          immutable: url.startsWith("/assets/"),
        });
      }
    };
    walk(this.dir);
    return files;
  }
}

function send(req: FastifyRequest, reply: FastifyReply, file: ConsoleFile): FastifyReply {
  const gzip = file.gzip && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
  reply
    .type(file.type)
    .header("cache-control", file.immutable ? "public, max-age=31536000, immutable" : "no-cache")
    .header("x-content-type-options", "nosniff")
    .header("vary", "accept-encoding");
  if (file.type.startsWith("text/html")) {
    reply.header("content-security-policy", CSP).header("referrer-policy", "no-referrer");
  }
  if (gzip) reply.header("content-encoding", "gzip");
  return reply.send(gzip ? file.gzip : file.body);
}

/** `GET /` and `GET /*`: the console's files, index.html for its deep links (permissions.ts: no token). */
export function consoleRoutes(app: FastifyInstance, files: ConsoleFiles): void {
  app.get("/", { schema: { hide: true } }, async (req, reply) => send(req, reply, files.index()));
  app.get("/*", { schema: { hide: true } }, async (req, reply) => {
    let path: string;
    try {
      path = decodeURIComponent(req.url.split("?")[0]);
    } catch {
      return reply.code(400).send({ code: "invalid", message: "the path is not valid percent-encoding" });
    }
    if (path.startsWith("/api/")) {
      return reply.code(404).send({ code: "not_found", message: `no route GET ${req.url.split("?")[0]}` });
    }
    const file = files.get(path);
    if (file) return send(req, reply, file);
    // A missing file (an old asset, a typo) is a 404; a path without an extension is a page of the console.
    if (/\.[a-z0-9]+$/i.test(path)) {
      return reply.code(404).send({ code: "not_found", message: `no console file ${path}` });
    }
    return send(req, reply, files.index());
  });
}
