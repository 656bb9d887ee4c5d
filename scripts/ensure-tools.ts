// What scripts, tests and benches install from Debian (`ensureDebianPackages({ nginx: "nginx" })`):
// the run-time module in src/common/debian-packages.ts, which herd itself uses too.

export { ensureDebianPackages, findBinary } from "../src/common/debian-packages.ts";
