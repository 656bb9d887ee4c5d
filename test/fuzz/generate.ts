/**
 * The fuzzer's request generator: request number i of seed s is always the
 * same request (its own PRNG is seeded from both), so any request a run
 * reports can be made again with `npm run fuzz -- --seed s --replay i`.
 *
 *   OpenAPI operation ─► params, query, body from its schemas ─► mutations
 *   (wrong types, huge and unicode strings, deep nesting, junk uploads, bad
 *   content types and encodings, bad auth headers)
 */

import { gzipSync } from "node:zlib";

/** One request, as sent and as printed for a replay. */
export interface FuzzRequest {
  index: number;
  /** The route it was made for (`METHOD /path` of the OpenAPI document), or `junk`. */
  route: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Sent from its own loopback address: bad credentials count per client address. */
  ownAddress?: boolean;
}

/** An operation of the OpenAPI document, reduced to what the generator reads. */
export interface Operation {
  method: string;
  /** OpenAPI path, `{param}` style. */
  path: string;
  params: Param[];
  body?: { contentTypes: string[]; schema?: Schema };
}

interface Param {
  name: string;
  in: "path" | "query" | "header";
  schema: Schema;
  required: boolean;
}

/** A JSON schema node, as the OpenAPI document has it. */
export interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  $ref?: string;
}

/** The operations of an OpenAPI 3 document. */
export function operationsOf(doc: {
  paths: Record<string, Record<string, { parameters?: Param[]; requestBody?: unknown }>>;
}): Operation[] {
  const out: Operation[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (method === "parameters") continue;
      const rb = op.requestBody as { content?: Record<string, { schema?: Schema }> } | undefined;
      const contentTypes = Object.keys(rb?.content ?? {});
      out.push({
        method: method.toUpperCase(),
        path,
        params: (op.parameters ?? []).filter((p) => p.in !== "header"),
        ...(rb ? { body: { contentTypes, schema: rb.content?.[contentTypes[0]]?.schema } } : {}),
      });
    }
  }
  return out.sort((a, b) => `${a.method} ${a.path}`.localeCompare(`${b.method} ${b.path}`));
}

/** A small fast PRNG (mulberry32): the same seed, the same numbers. */
export class Random {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.next() * list.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
}

/** Names that exist on the fuzzed server (tenants, apps, nodes), so requests get past "not found". */
const KNOWN = ["a", "b", "default", "web", "n1", "n2", "api", "main", "x"];
/** Strings that match many of the API's patterns. */
const SHAPED = [
  ...KNOWN,
  "0000beef",
  "0".repeat(32),
  "0".repeat(64),
  "5m",
  "1h",
  "30d",
  "10",
  "2026-01-01T00:00:00Z",
  "http://127.0.0.1:1/metrics",
  "shop.example.com",
  "up",
  'rate(http_requests_total{app="web"}[5m])',
  "sum by (app) (x)",
  "GET",
  "/",
  "/api",
  "web.localhost",
];
const UNICODE = [
  "é",
  "日本語",
  "🦬",
  "\u202e",
  "\u0000",
  "\ud800",
  "\uffff",
  "Ω≈ç√",
  "a\u0301",
  "\r\n",
  "\\",
  '"',
  "%",
  "../",
  "$" + "{x}",
];
const QUERY_KEYS = [
  "tenant",
  "query",
  "start",
  "end",
  "step",
  "time",
  "match[]",
  "limit",
  "since",
  "until",
  "follow",
  "tail",
  "after",
  "kinds",
  "from",
  "service",
  "app",
  "revision",
  "all",
  "user",
  "level",
  "text",
  "timeout",
  "lookback",
  "minDuration",
];
const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "application/json; charset=latin1",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/gzip",
  "application/octet-stream",
  "application/x-protobuf",
  "application/xml",
  "application/json;;;",
  "*/*",
  "",
];

/** A random string: shaped, unicode, long or plain. */
function randomString(r: Random, maxLength = 40): string {
  const kind = r.int(0, 9);
  if (kind < 3) return r.pick(SHAPED);
  if (kind < 5) {
    let s = "";
    for (let i = r.int(1, 8); i > 0; i--) s += r.chance(0.5) ? r.pick(UNICODE) : r.pick(SHAPED);
    return s;
  }
  if (kind === 5) return r.pick(["", " ", "null", "true", "-1", "1e309", "NaN", "[]", "{}"]);
  if (kind === 6) return "x".repeat(r.pick([256, 4096, 65_536, 200_000]));
  let s = "";
  const n = r.int(1, maxLength);
  for (let i = 0; i < n; i++)
    s += String.fromCharCode(r.pick([r.int(97, 122), r.int(32, 126), r.int(0, 0xffff)]));
  return s;
}

/** A JSON value of any type (the wrong one, most of the time). */
function junkValue(r: Random, depth = 0): unknown {
  switch (r.int(0, 12)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 53 + 1, -(2 ** 31), 1e308, Number.MIN_VALUE, 1e21]);
    case 3:
      return randomString(r);
    case 4:
      return depth > 2 ? [] : Array.from({ length: r.int(0, 4) }, () => junkValue(r, depth + 1));
    case 5:
      return depth > 2
        ? {}
        : Object.fromEntries(
            Array.from({ length: r.int(0, 4) }, () => [randomString(r, 8), junkValue(r, depth + 1)]),
          );
    case 6:
      return JSON.parse('{"__proto__": {"admin": true}, "constructor": {"prototype": {"x": 1}}}');
    case 7:
      return nested(r.pick([50, 1000, 3000]));
    case 8:
      return Array.from({ length: r.pick([1000, 20_000]) }, (_, i) => i);
    default:
      return randomString(r);
  }
}

/** An array nested `depth` deep. */
const nested = (depth: number): unknown => JSON.parse(`${"[".repeat(depth)}${"]".repeat(depth)}`);

/** A value for a schema: mostly valid, sometimes mutated at some node. */
function fromSchema(r: Random, s: Schema | undefined, depth = 0, mutate = 0.08): unknown {
  if (!s || depth > 6) return junkValue(r, 3);
  if (r.chance(mutate)) return junkValue(r, depth);
  const alts = s.anyOf ?? s.oneOf;
  if (alts?.length) return fromSchema(r, r.pick(alts), depth + 1, mutate);
  if (s.allOf?.length) return fromSchema(r, s.allOf[0], depth + 1, mutate);
  if (s.const !== undefined) return s.const;
  if (s.enum?.length) return r.pick(s.enum);
  const type = Array.isArray(s.type) ? r.pick(s.type) : (s.type ?? (s.properties ? "object" : undefined));
  switch (type) {
    case "string":
      return schemaString(r, s);
    case "integer":
    case "number": {
      const lo = s.minimum ?? -1000;
      const hi = Math.min(s.maximum ?? 100_000, lo + 1_000_000);
      const n = lo + r.next() * (hi - lo);
      return type === "integer" ? Math.round(n) : n;
    }
    case "boolean":
      return r.chance(0.5);
    case "null":
      return null;
    case "array": {
      const n = r.int(s.minItems ?? 0, Math.min(s.maxItems ?? 4, (s.minItems ?? 0) + 4));
      return Array.from({ length: n }, () => fromSchema(r, s.items, depth + 1, mutate));
    }
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(s.properties ?? {})) {
        if (s.required?.includes(k) ? !r.chance(0.05) : r.chance(0.5))
          out[k] = fromSchema(r, v, depth + 1, mutate);
      }
      const extra = typeof s.additionalProperties === "object" ? s.additionalProperties : undefined;
      if (extra || !s.properties) {
        for (let i = r.int(0, 3); i > 0; i--) out[r.pick(KNOWN)] = fromSchema(r, extra, depth + 1, mutate);
      }
      if (r.chance(0.05)) out[randomString(r, 10)] = junkValue(r, depth);
      return out;
    }
    default:
      return junkValue(r, depth);
  }
}

/** A string for a string schema: a shaped one that matches the pattern when there is one. */
function schemaString(r: Random, s: Schema): string {
  if (s.format === "date-time") return new Date(1_700_000_000_000 + r.int(0, 1e9) * 1000).toISOString();
  if (s.pattern && r.chance(0.85)) {
    const re = new RegExp(s.pattern);
    const fits = SHAPED.filter((x) => re.test(x));
    if (fits.length) return r.pick(fits);
  }
  if (r.chance(0.7)) {
    const max = Math.min(s.maxLength ?? 30, 30);
    const min = Math.min(s.minLength ?? 1, max);
    let out = "";
    for (let i = r.int(min, max); i > 0; i--) out += String.fromCharCode(r.int(97, 122));
    return out;
  }
  return randomString(r);
}

/** A parameter in a path: known names mostly, else anything, percent-encoded. */
function pathValue(r: Random, p: Param): string {
  const v = r.chance(0.75) ? String(fromSchema(r, p.schema, 0, 0.05)) : randomString(r, 20);
  if (r.chance(0.03)) return r.pick(["..", "%2e%2e", "%2F", "%00", "%zz", "a%2Fb", "%"]);
  return enc(v.slice(0, r.chance(0.9) ? 200 : 5000));
}

/** A minimal ustar archive of these entries (names and types as given, even hostile ones). */
export function tarOf(entries: { name: string; body: Buffer; type?: string; link?: string }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    h.write(e.name.slice(0, 100), 0, "utf8");
    h.write("0000644\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(`${e.body.length.toString(8).padStart(11, "0")}\0`, 124);
    h.write("00000000000\0", 136);
    h.write("        ", 148);
    h.write(e.type ?? "0", 156);
    if (e.link) h.write(e.link.slice(0, 100), 157);
    h.write("ustar\u000000", 257, "binary");
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    blocks.push(h, e.body, Buffer.alloc((512 - (e.body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** A deploy upload: junk, gzip of junk, truncated gzip, or a tarball with hostile entries. */
function upload(r: Random): Buffer {
  switch (r.int(0, 7)) {
    case 0:
      return Buffer.alloc(0);
    case 1:
      return r.bytes(r.int(1, 4096));
    case 2:
      return gzipSync(r.bytes(r.int(0, 4096)));
    case 3: {
      const gz = gzipSync(tarOf([{ name: "index.html", body: Buffer.from("<h1>hi</h1>") }]));
      return gz.subarray(0, r.int(1, gz.length - 1));
    }
    case 4:
      return Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0]), r.bytes(r.int(0, 2048))]);
    case 5:
      return gzipSync(tarOf([{ name: "x", body: r.bytes(600) }]).subarray(0, r.int(1, 1500)));
    default:
      return gzipSync(
        tarOf(
          Array.from({ length: r.int(1, 4) }, () => ({
            name: r.pick([
              "../../escape",
              "/abs/path",
              "a/../../b",
              "herd.yaml",
              "pkg/",
              "日本.txt",
              "x".repeat(99),
            ]),
            body: r.chance(0.3) ? Buffer.from("services: [: nope") : r.bytes(r.int(0, 700)),
            type: r.pick(["0", "0", "5", "2", "1", "3", "7"]),
            link: r.pick(["/etc/passwd", "../../..", "x"]),
          })),
        ),
      );
  }
}

/** Credentials a request may carry (secrets filled in by the fuzzer). */
export interface Credentials {
  /** Valid tokens, the admin's first. */
  valid: string[];
  /** Revoked and expired tokens. */
  dead: string[];
}

/** The authorization header of a request, and whether it is a bad one (sent from its own address). */
function authorization(r: Random, c: Credentials): { header?: string; bad: boolean } {
  const p = r.next();
  if (p < 0.45) return { header: `Bearer ${c.valid[0]}`, bad: false };
  if (p < 0.8) return { header: `Bearer ${r.pick(c.valid)}`, bad: false };
  if (p < 0.84) return { header: `Bearer ${r.pick(c.dead)}`, bad: false };
  if (p < 0.86) {
    // the token as a Basic password, as promtool sends it
    return { header: `Basic ${Buffer.from(`x:${r.pick(c.valid)}`).toString("base64")}`, bad: false };
  }
  const junk = r.pick([
    undefined,
    "",
    "Bearer",
    "Bearer ",
    "bearer x",
    `Bearer ${"x".repeat(8000)}`,
    "Bearer herd_pat_00000000_nope",
    "Basic !!!",
    "Basic ",
    `Basic ${Buffer.from("no-colon").toString("base64")}`,
    "Digest x",
    `Bearer ${c.valid[0]}x`,
    `Bearer  ${c.valid[0]}`,
    "Bearer \t\t",
  ]);
  return { header: junk, bad: true };
}

/** Request number `index` of a run with `seed`. */
export function generate(
  seed: number,
  index: number,
  ops: readonly Operation[],
  credentials: Credentials,
): FuzzRequest {
  const r = new Random((seed * 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b));
  const auth = authorization(r, credentials);
  const headers: Record<string, string> = {};
  if (auth.header !== undefined) headers.authorization = auth.header;

  if (r.chance(0.02)) {
    // A path that is no route, or a method the path does not have.
    const op = r.pick(ops);
    const method = r.pick(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
    const path = r.chance(0.5) ? `/api/v1/${enc(randomString(r, 30))}` : op.path.replace(/\{[^}]+\}/g, "x");
    return { index, route: "junk", method, path, headers, ownAddress: auth.bad };
  }

  const op = r.pick(ops);
  let path = op.path;
  const query: string[] = [];
  for (const p of op.params) {
    if (p.in === "path") {
      path = path.replace(`{${p.name}}`, pathValue(r, p));
      continue;
    }
    if (!(p.required || r.chance(0.4))) continue;
    const values = r.chance(0.05) ? [0, 1] : [0];
    for (const _ of values) {
      const v = r.chance(0.85) ? fromSchema(r, p.schema, 0, 0.1) : junkValue(r, 2);
      query.push(`${enc(p.name)}=${enc(typeof v === "string" ? v : JSON.stringify(v))}`);
    }
  }
  // Keys the schema does not name (the Prometheus API reads its own), sometimes with junk.
  for (let i = r.chance(0.3) ? r.int(1, 4) : 0; i > 0; i--) {
    const key = r.chance(0.9) ? r.pick(QUERY_KEYS) : randomString(r, 10);
    const value = r.chance(0.6) ? r.pick(SHAPED) : randomString(r, 30);
    query.push(`${enc(key)}=${enc(value)}`);
  }
  if (r.chance(0.01))
    query.push(r.pick(["%zz", "a=%", "&&&", "=x", "tenant", "tenant[]=a", "__proto__[x]=1"]));
  if (query.length) path += `?${query.join("&")}`;

  let body: Buffer | undefined;
  const deploy = op.body?.contentTypes.some((t) => t.includes("gzip")) || /\/deploys$/.test(op.path);
  if (deploy && op.method === "POST") {
    body = upload(r);
    headers["content-type"] = r.chance(0.85) ? "application/gzip" : r.pick(CONTENT_TYPES);
  } else if (op.body || (op.method !== "GET" && op.method !== "DELETE" && r.chance(0.7))) {
    const k = r.next();
    if (k < 0.8) body = Buffer.from(JSON.stringify(fromSchema(r, op.body?.schema, 0, 0.08)) ?? "null");
    else if (k < 0.88) body = Buffer.from(JSON.stringify(junkValue(r)) ?? "null");
    else if (k < 0.93)
      body = Buffer.from(r.pick(["{", '{"a":', "[1,]", "nul", "\u0000", '{"a":1}{"b":2}', ""]));
    else if (k < 0.96)
      body = Buffer.from(`${"[".repeat(r.pick([10_000, 200_000]))}${"]".repeat(r.int(0, 10))}`);
    else body = r.bytes(r.int(0, 2048));
    headers["content-type"] = r.chance(0.9) ? "application/json" : r.pick(CONTENT_TYPES);
    if (headers["content-type"] === "") delete headers["content-type"];
    if (r.chance(0.03)) {
      headers["content-encoding"] = r.pick(["gzip", "deflate", "br", "x-junk"]);
      if (r.chance(0.5)) body = gzipSync(body);
    }
  } else if (op.method === "DELETE" && r.chance(0.05)) {
    body = Buffer.from("{}");
    headers["content-type"] = "application/json";
  }
  if (r.chance(0.05))
    headers.accept = r.pick(["text/event-stream", "application/x-ndjson", "*/*", "text/html"]);
  if (r.chance(0.02)) headers["last-event-id"] = randomString(r, 20).replace(/[^\x20-\x7e]/g, "");
  if (r.chance(0.02)) headers["x-forwarded-for"] = r.pick(["1.2.3.4", "::1", "junk"]);
  return {
    index,
    route: `${op.method} ${op.path}`,
    method: op.method,
    path,
    headers,
    ...(body !== undefined ? { body } : {}),
    ownAddress: auth.bad,
  };
}

/** Percent-encodes any string (lone surrogates become U+FFFD first). */
const enc = (s: string): string => encodeURIComponent(s.toWellFormed());
