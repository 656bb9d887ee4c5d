/**
 * JSON Web Tokens as the gateway checks them: compact JWS with HS256 or
 * RS256, verified synchronously with node:crypto (no promise per request;
 * the keys are parsed when the table is built). Only what a gateway needs:
 * decode, check the signature with a key bound to one algorithm (so an RSA
 * public key can never be used as an HMAC secret), check exp, nbf and aud.
 */

import { createHmac, type KeyObject, timingSafeEqual, verify } from "node:crypto";

/** A verification key, bound to the one algorithm it may be used with. */
export type JwtKey = { alg: "HS256"; secret: Buffer } | { alg: "RS256"; publicKey: KeyObject };

/** A token split and decoded, not yet verified. */
export interface DecodedJwt {
  header: { alg?: unknown; kid?: unknown; crit?: unknown };
  payload: Record<string, unknown>;
  /** `header.payload`, the bytes the signature covers. */
  signingInput: string;
  signature: Buffer;
}

/** Splits and decodes a compact JWT; a string saying what is wrong when it is not one. */
export function decodeJwt(token: string): DecodedJwt | string {
  const first = token.indexOf(".");
  const second = first === -1 ? -1 : token.indexOf(".", first + 1);
  if (first <= 0 || second === -1 || token.indexOf(".", second + 1) !== -1) return "the token is not a JWT";
  let header: unknown;
  let payload: unknown;
  try {
    header = JSON.parse(Buffer.from(token.slice(0, first), "base64url").toString("utf8"));
    payload = JSON.parse(Buffer.from(token.slice(first + 1, second), "base64url").toString("utf8"));
  } catch {
    return "the token is not a JWT (its header or payload is not base64url JSON)";
  }
  if (!isObject(header) || !isObject(payload)) return "the token is not a JWT";
  return {
    header,
    payload,
    signingInput: token.slice(0, second),
    signature: Buffer.from(token.slice(second + 1), "base64url"),
  };
}

/** Whether the token's signature was made with `key` (and with the key's algorithm). */
export function signatureValid(jwt: DecodedJwt, key: JwtKey): boolean {
  if (jwt.header.alg !== key.alg) return false;
  if (key.alg === "HS256") {
    const expected = createHmac("sha256", key.secret).update(jwt.signingInput).digest();
    return expected.length === jwt.signature.length && timingSafeEqual(expected, jwt.signature);
  }
  try {
    return verify("sha256", Buffer.from(jwt.signingInput), key.publicKey, jwt.signature);
  } catch {
    return false;
  }
}

/**
 * Checks the time and audience claims at `now` (ms). Returns null when they
 * hold, or what is wrong; `expired` tells an expired token from other faults.
 */
export function claimsProblem(
  payload: Record<string, unknown>,
  now: number,
  audience: string | undefined,
): { expired: boolean; message: string } | null {
  const seconds = now / 1000;
  const { exp, nbf, aud } = payload;
  if (exp !== undefined) {
    if (typeof exp !== "number") return { expired: false, message: "the token's exp is not a number" };
    if (seconds >= exp) {
      return { expired: true, message: `the token expired at ${new Date(exp * 1000).toISOString()}` };
    }
  }
  if (nbf !== undefined) {
    if (typeof nbf !== "number") return { expired: false, message: "the token's nbf is not a number" };
    if (seconds < nbf) {
      return {
        expired: false,
        message: `the token is not valid before ${new Date(nbf * 1000).toISOString()}`,
      };
    }
  }
  if (audience !== undefined && !(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) {
    return { expired: false, message: `the token is not for audience ${audience}` };
  }
  return null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
