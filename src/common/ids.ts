import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/** A short random id (base32, lowercase), e.g. for instances and deploys. */
export function newId(length = 10): string {
  const bytes = randomBytes(length);
  let out = "";
  for (const b of bytes) out += ALPHABET[b & 31];
  return out;
}

/** An id that sorts by creation time (ms timestamp + random), for events. */
export function timeOrderedId(now = Date.now()): string {
  return `${now.toString(36).padStart(9, "0")}${newId(6)}`;
}
