/**
 * A fast protobuf reader for the OTLP requests: the wire format read straight
 * into the OTLP JSON form that `protobufjs`'s `toObject` makes (same keys,
 * only the fields present, oneofs as their one member), with trace and span
 * ids as hex and 64-bit integers as exact decimal text. The field numbers and
 * types come from protobufjs's parse of proto.ts, so the schema has one
 * source; only the reading is done here, because toObject's 64-bit
 * conversions and message objects cost several times the decode itself
 * (bench:telemetry). protobuf.test.ts checks it against protobufjs.
 *
 *   bytes ─► readMessage(schema of ExportXServiceRequest) ─► { resourceSpans: [{…}] }
 */

import type protobuf from "protobufjs";

type Json = Record<string, unknown>;

/** How one field is read. */
type Kind =
  | "string"
  | "bytes" // base64, as toObject writes them
  | "hex" // trace and span ids
  | "bool"
  | "varint" // int32, uint32, enums
  | "int64" // int64, sfixed64: decimal text
  | "uint64" // fixed64, uint64: decimal text
  | "double"
  | "fixed32"
  | "message";

interface Field {
  name: string;
  kind: Kind;
  repeated: boolean;
  /** The wire type of each element when a repeated scalar is packed. */
  packedWire?: number;
  message?: Schema;
}
type Schema = Map<number, Field>;

const HEX_FIELDS = new Set(["traceId", "spanId", "parentSpanId"]);
const FIXED64 = new Set(["fixed64", "sfixed64", "double"]);

const schemas = new WeakMap<protobuf.Type, Schema>();

/** The reading schema of a protobufjs type (and, lazily, of the types it holds). */
export function schemaOf(type: protobuf.Type): Schema {
  let schema = schemas.get(type);
  if (schema) return schema;
  schema = new Map();
  schemas.set(type, schema);
  for (const f of type.fieldsArray) {
    f.resolve();
    const field: Field = { name: f.name, kind: kindOf(f), repeated: f.repeated };
    if (field.kind === "message") field.message = schemaOf(f.resolvedType as protobuf.Type);
    else if (f.repeated && field.kind !== "string" && field.kind !== "bytes" && field.kind !== "hex") {
      field.packedWire = FIXED64.has(f.type) ? 1 : f.type === "fixed32" ? 5 : 0;
    }
    schema.set(f.id, field);
  }
  return schema;
}

function kindOf(f: protobuf.Field): Kind {
  if (f.resolvedType && "fieldsArray" in f.resolvedType) return "message";
  if (f.resolvedType) return "varint"; // an enum
  switch (f.type) {
    case "string":
      return "string";
    case "bytes":
      return HEX_FIELDS.has(f.name) ? "hex" : "bytes";
    case "bool":
      return "bool";
    case "int32":
    case "uint32":
      return "varint";
    case "int64":
    case "sfixed64":
      return "int64";
    case "uint64":
    case "fixed64":
      return "uint64";
    case "double":
      return "double";
    case "fixed32":
      return "fixed32";
    default:
      throw new Error(`wire.ts does not read ${f.type} (${f.name})`);
  }
}

/** Thrown for bytes that are not the message. */
export class WireError extends Error {}

class Reader {
  readonly buf: Buffer;
  pos: number;
  constructor(buf: Buffer, pos = 0) {
    this.buf = buf;
    this.pos = pos;
  }
  varint(): number {
    // Up to 2^53 exactly; 64-bit varints herd reads as numbers are counts and enums.
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new WireError("truncated varint");
      const b = this.buf[this.pos++] as number;
      result += (b & 0x7f) * shift;
      if (b < 0x80) return result;
      shift *= 128;
    }
    throw new WireError("varint longer than 10 bytes");
  }
  /** A varint as its low and high 32 bits (for int64/uint64 fields). */
  varint64(): [number, number] {
    let lo = 0;
    let hi = 0;
    let i = 0;
    for (; i < 4; i++) {
      const b = this.byte();
      lo |= (b & 0x7f) << (i * 7);
      if (b < 0x80) return [lo >>> 0, 0];
    }
    let b = this.byte();
    lo |= (b & 0x7f) << 28;
    hi = (b & 0x7f) >> 4;
    if (b < 0x80) return [lo >>> 0, hi >>> 0];
    for (i = 0; i < 5; i++) {
      b = this.byte();
      hi |= (b & 0x7f) << (i * 7 + 3);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    throw new WireError("varint longer than 10 bytes");
  }
  byte(): number {
    if (this.pos >= this.buf.length) throw new WireError("truncated varint");
    return this.buf[this.pos++] as number;
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new WireError("truncated field");
  }
  skip(wire: number): void {
    if (wire === 0) this.varint64();
    else if (wire === 1) {
      this.need(8);
      this.pos += 8;
    } else if (wire === 2) {
      const n = this.varint();
      this.need(n);
      this.pos += n;
    } else if (wire === 5) {
      this.need(4);
      this.pos += 4;
    } else throw new WireError(`wire type ${wire} is not supported`);
  }
}

/** An unsigned 64-bit value (two 32-bit halves) as exact decimal text. */
function u64Text(lo: number, hi: number): string {
  if (hi < 0x200000) return String(hi * 4294967296 + lo);
  // hi·2^32 + lo = 1000·(hi·4294967 + ⌊(hi·296 + lo)/1000⌋) + (hi·296 + lo) mod 1000, each part exact.
  const rest = hi * 296 + lo;
  const head = hi * 4294967 + Math.floor(rest / 1000);
  if (head > Number.MAX_SAFE_INTEGER) return ((BigInt(hi) << 32n) | BigInt(lo)).toString();
  return `${head}${String(rest % 1000).padStart(3, "0")}`;
}

/** A signed (two's complement) 64-bit value as exact decimal text. */
function i64Text(lo: number, hi: number): string {
  if (hi < 0x80000000) return u64Text(lo, hi);
  // Negative: -(~x + 1).
  const nlo = (~lo + 1) >>> 0;
  const nhi = (~hi + (nlo === 0 ? 1 : 0)) >>> 0;
  return `-${u64Text(nlo, nhi)}`;
}

function readScalar(r: Reader, kind: Kind, wire: number): unknown {
  const buf = r.buf;
  switch (kind) {
    case "string":
    case "bytes":
    case "hex": {
      if (wire !== 2) throw new WireError("expected a length-delimited field");
      const n = r.varint();
      r.need(n);
      const start = r.pos;
      r.pos += n;
      if (kind === "string") return buf.toString("utf8", start, start + n);
      return buf.toString(kind === "hex" ? "hex" : "base64", start, start + n);
    }
    case "bool":
      return r.varint() !== 0;
    case "varint": {
      const [lo, hi] = r.varint64();
      // int32 and enums: negative values come as 10-byte varints.
      return hi >= 0x80000000 ? lo | 0 : lo;
    }
    case "int64":
    case "uint64": {
      let lo: number;
      let hi: number;
      if (wire === 1) {
        r.need(8);
        lo = buf.readUInt32LE(r.pos);
        hi = buf.readUInt32LE(r.pos + 4);
        r.pos += 8;
      } else [lo, hi] = r.varint64();
      return kind === "int64" ? i64Text(lo, hi) : u64Text(lo, hi);
    }
    case "double": {
      r.need(8);
      const v = buf.readDoubleLE(r.pos);
      r.pos += 8;
      return v;
    }
    case "fixed32": {
      r.need(4);
      const v = buf.readUInt32LE(r.pos);
      r.pos += 4;
      return v;
    }
    default:
      throw new WireError(`cannot read ${kind}`);
  }
}

/** The array a repeated field's values are pushed to, made at its first value. */
function listOf(out: Json, name: string): unknown[] {
  let list = out[name] as unknown[] | undefined;
  if (list === undefined) {
    list = [];
    out[name] = list;
  }
  return list;
}

function readMessage(r: Reader, end: number, schema: Schema): Json {
  const out: Json = {};
  while (r.pos < end) {
    const tag = r.varint();
    const id = Math.floor(tag / 8);
    const wire = tag & 7;
    const field = schema.get(id);
    if (!field) {
      r.skip(wire);
      continue;
    }
    if (field.kind === "message") {
      if (wire !== 2) throw new WireError(`field ${field.name}: expected a message`);
      const n = r.varint();
      r.need(n);
      const value = readMessage(r, r.pos + n, field.message as Schema);
      if (field.repeated) listOf(out, field.name).push(value);
      else out[field.name] = value;
      continue;
    }
    if (wire === 2 && field.packedWire !== undefined) {
      const n = r.varint();
      r.need(n);
      const stop = r.pos + n;
      const list = listOf(out, field.name);
      while (r.pos < stop) list.push(readScalar(r, field.kind, field.packedWire));
      if (r.pos !== stop) throw new WireError(`field ${field.name}: packed values overrun`);
      continue;
    }
    const value = readScalar(r, field.kind, wire);
    if (field.repeated) listOf(out, field.name).push(value);
    else out[field.name] = value;
  }
  if (r.pos !== end) throw new WireError("a field runs past its message");
  return out;
}

/** Reads a whole message of this schema; WireError when the bytes are not one. */
export function readWire(schema: Schema, body: Uint8Array): Json {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const r = new Reader(buf);
  return readMessage(r, buf.length, schema);
}
