/** Strips every .ts file under `root` (tests aside) that the cache `dir` lacks, and removes its old entries. */
export function stripTree(root: string, dir: string): void;
