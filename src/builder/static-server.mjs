// The web server of a static site: serves the current directory on $PORT.
// The builder copies this file into the slug as .herd/static-server.mjs; it is
// plain JavaScript with no dependencies because it runs inside the app's slug,
// where nothing else of herd exists.

import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, sep } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".xml": "application/xml; charset=utf-8",
  ".csv": "text/csv; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".avif": "image/avif",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".otf": "font/otf",
  ".wasm": "application/wasm",
  ".pdf": "application/pdf",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
  ".mp3": "audio/mpeg",
  ".wav": "audio/wav",
  ".webmanifest": "application/manifest+json",
};

const root = await realpath(process.cwd());
const port = Number(process.env.PORT ?? 3000);

function sendError(res, status, code, message) {
  const body = JSON.stringify({ code, message });
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** Maps a URL path to a file under root, or null when it must not be served. */
async function resolveFile(pathname) {
  const segments = pathname.split("/").filter((s) => s !== "");
  // Dot segments are refused outright: ".." would climb out, and dot directories
  // (.herd, .git) are not part of the site. .well-known is the one exception.
  if (segments.some((s) => s.startsWith(".") && s !== ".well-known")) return null;
  if (segments.some((s) => s.includes("\\") || s.includes("\0"))) return null;
  let path = join(root, ...segments);
  let info = await stat(path).catch(() => null);
  if (info?.isDirectory()) {
    path = join(path, "index.html");
    info = await stat(path).catch(() => null);
  }
  if (!info?.isFile()) return null;
  // A symlink inside the site could still point elsewhere on the machine.
  const real = await realpath(path);
  if (real !== root && !real.startsWith(root + sep)) return null;
  return { path: real, size: info.size };
}

const server = createServer(async (req, res) => {
  try {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      sendError(res, 405, "method_not_allowed", `${req.method} is not supported; this is a static site`);
      return;
    }
    const url = new URL(req.url ?? "/", "http://localhost");
    let pathname;
    try {
      pathname = decodeURIComponent(url.pathname);
    } catch {
      sendError(res, 400, "invalid", "the path is not valid percent-encoding");
      return;
    }
    const file = await resolveFile(pathname);
    if (!file) {
      sendError(res, 404, "not_found", `${url.pathname} does not exist`);
      return;
    }
    // Relative links in an index.html resolve against the directory only with a trailing slash.
    if (
      file.path.endsWith(`${sep}index.html`) &&
      !pathname.endsWith("/") &&
      !pathname.endsWith("index.html")
    ) {
      res.writeHead(301, { location: `${url.pathname}/${url.search}` });
      res.end();
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[extname(file.path).toLowerCase()] ?? "application/octet-stream",
      "content-length": file.size,
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    createReadStream(file.path)
      .on("error", () => res.destroy())
      .pipe(res);
  } catch (err) {
    if (!res.headersSent) sendError(res, 500, "internal", `cannot serve ${req.url}: ${err.message}`);
    else res.destroy();
  }
});

// PORT=0 picks a free port; print the one actually bound.
server.listen(port, () => console.log(`static site in ${root} listening on ${server.address().port}`));

// Finish in-flight requests, then exit; give up on slow clients after 5 s.
function shutdown(signal) {
  console.log(`${signal}: closing`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
