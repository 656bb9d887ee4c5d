/**
 * node:http taken with require, not an ES import (and node:https and node:tls
 * on first use). An ES import of a built-in
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

const require = createRequire(import.meta.url);

/**
 * node:https, loaded on the first call: node:https with node:tls costs a
 * process about 2.5 MB, and a control plane that serves and calls plain HTTP
 * (herd up's) never needs them.
 */
export const nodeHttps = (): typeof import("node:https") => require("node:https");

/** node:tls, loaded on the first call (see nodeHttps). */
export const nodeTls = (): typeof import("node:tls") => require("node:tls");
