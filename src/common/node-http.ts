/**
 * node:http taken with require, not an ES import. An ES import of a built-in
 * makes Node build its module namespace, which reads every export, and
 * node:http's `WebSocket` export is a getter that loads Node's bundled undici
 * (fetch, WebSocket, its HTTP/2 client and node:http2): about 15 MB of RSS in
 * a process that uses none of them. require() hands back the exports object
 * without reading the getters. Modules on the gateway's path take node:http's
 * values from here and its types from `import type http from "node:http"`.
 */

import { createRequire } from "node:module";

/** The node:http module. */
export const nodeHttp = createRequire(import.meta.url)("node:http") as typeof import("node:http");
