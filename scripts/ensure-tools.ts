// Installs the Debian packages a script needs when their binaries are missing.
// The project's own files install what they need (never by hand), so a fresh
// machine runs `npm run bench:gateway` as it is. Needs root (apt-get).
//
//   await ensureDebianPackages({ nginx: "nginx", wrk: "wrk" });

import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Directories searched besides PATH: Debian puts daemons such as nginx in /usr/sbin. */
const EXTRA_DIRS = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

let updated = false;

/** The full path of an executable `name` on PATH (or in the sbin dirs), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

function apt(args: string[]): void {
  console.log(`ensure-tools: apt-get ${args.join(" ")}`);
  const r = spawnSync("apt-get", args, {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  if (r.error) throw new Error(`apt-get ${args[0]} failed: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`apt-get ${args[0]} exited with ${r.status ?? r.signal}`);
}

/**
 * Makes sure every binary (name → Debian package) is installed: checks PATH
 * and /usr/sbin, and installs the packages of the missing ones with
 * `apt-get update` (once per process) and `apt-get install -y --no-install-recommends`.
 * Returns each binary's full path.
 */
export async function ensureDebianPackages(
  binaries: Record<string, string>,
): Promise<Record<string, string>> {
  const missing = Object.entries(binaries).filter(([name]) => !findBinary(name));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map(([, pkg]) => pkg))];
    console.log(
      `ensure-tools: missing ${missing.map(([name]) => name).join(", ")}; installing Debian package(s) ${packages.join(", ")}`,
    );
    if (process.getuid?.() !== 0) {
      throw new Error(`installing ${packages.join(" ")} needs root: run as root or install them first`);
    }
    if (!updated) {
      apt(["update"]);
      updated = true;
    }
    apt(["install", "-y", "--no-install-recommends", ...packages]);
  }
  const paths: Record<string, string> = {};
  for (const name of Object.keys(binaries)) {
    const path = findBinary(name);
    if (!path) throw new Error(`${name} is still not found after installing ${binaries[name]}`);
    paths[name] = path;
  }
  return paths;
}
