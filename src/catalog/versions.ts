/**
 * What `version=` of a package search means: an exact version, or a semver
 * range as npm reads it (`^1.2`, `~4.17.0`, `>=1 <2`, `1.x`, `1.2.3 - 1.4`,
 * `a || b`), matched with npm's own semver library. A recorded version that
 * is not semver (a git or file reference in an old lockfile) matches only
 * the same text.
 */

import { satisfies, valid, validRange } from "semver";

/** Whether `query` is a version or a range herd can search for. */
export function isVersionQuery(query: string): boolean {
  return validRange(query) !== null;
}

/** Whether a recorded `version` is what `query` (a version or range) asks for. */
export function versionMatches(version: string, query: string): boolean {
  if (version === query) return true;
  if (valid(version) === null) return false;
  return satisfies(version, query);
}
