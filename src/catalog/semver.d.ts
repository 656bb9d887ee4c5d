// semver (npm's own version library, already in the tree under fastify) ships no
// types, and @types/semver is not installed: the functions the catalog uses.
declare module "semver" {
  export function satisfies(
    version: string,
    range: string,
    options?: { includePrerelease?: boolean; loose?: boolean },
  ): boolean;
  export function validRange(range: string): string | null;
  export function valid(version: string): string | null;
}
