/**
 * Installs the Debian packages herd needs when their binaries are missing:
 * at run time (the add-ons' servers, an etcd for tests) and for scripts, tests
 * and benches (scripts/ensure-tools.ts re-exports it). The project's own files
 * install what they need (never by hand), so a fresh machine runs
 * `npm run bench:gateway` as it is. Needs root (apt-get).
 *
 *   await ensureDebianPackages({ nginx: "nginx", wrk: "wrk" });
 *
 * Packages are installed for their binaries only: no service they ship is
 * started or left to start at boot. During `apt-get install` a
 * /usr/sbin/policy-rc.d that exits 101 tells the packages' scripts not to
 * start anything (unless one is there already), and the boot links the
 * install added (systemd `*.wants/*`, SysV `/etc/rc?.d/S*`) are disabled
 * afterwards (update-rc.d / systemctl disable, so an upgrade keeps them off).
 */

import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, delimiter, dirname, join } from "node:path";

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
    const before = bootLinks();
    const policy = holdServices();
    try {
      apt(["install", "-y", "--no-install-recommends", ...packages]);
    } finally {
      policy.release();
      const disabled = disableNewBootServices(before);
      if (disabled.length > 0) {
        console.log(
          `ensure-tools: ${disabled.join(", ")} would start at boot; disabled (only the binaries are needed)`,
        );
      }
    }
  }
  const paths: Record<string, string> = {};
  for (const name of Object.keys(binaries)) {
    const path = findBinary(name);
    if (!path) throw new Error(`${name} is still not found after installing ${binaries[name]}`);
    paths[name] = path;
  }
  return paths;
}

const POLICY_RC = "/usr/sbin/policy-rc.d";

/**
 * Makes the packages' maintainer scripts start no service (invoke-rc.d and
 * deb-systemd-invoke ask policy-rc.d; 101 = "action forbidden") until
 * `release`. A policy-rc.d already there (a container's) is left as it is.
 */
function holdServices(): { release(): void } {
  if (existsSync(POLICY_RC)) return { release() {} };
  writeFileSync(
    POLICY_RC,
    "#!/bin/sh\n# ensure-tools (herd): no service starts while packages are installed.\nexit 101\n",
    {
      mode: 0o755,
    },
  );
  return { release: () => rmSync(POLICY_RC, { force: true }) };
}

/**
 * The links that start services at boot under `root`: systemd's
 * `etc/systemd/system/*.wants/*` (and `*.requires/*`) and SysV's
 * `etc/rc?.d/S*`.
 */
export function bootLinks(root = "/"): Set<string> {
  const out = new Set<string>();
  const list = (dir: string) => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  const systemd = join(root, "etc/systemd/system");
  for (const d of list(systemd)) {
    if (!d.endsWith(".wants") && !d.endsWith(".requires")) continue;
    for (const unit of list(join(systemd, d))) out.add(join(systemd, d, unit));
  }
  for (const d of list(join(root, "etc"))) {
    if (!/^rc[0-6S]\.d$/.test(d)) continue;
    for (const link of list(join(root, "etc", d)))
      if (link.startsWith("S")) out.add(join(root, "etc", d, link));
  }
  return out;
}

/** The service a boot link starts: `prometheus` for `…wants/prometheus.service` and for `rc2.d/S01prometheus`. */
export function serviceOfLink(link: string): string {
  const name = basename(link);
  return /^rc[0-6S]\.d$/.test(basename(dirname(link)))
    ? name.replace(/^S\d*/, "")
    : name.replace(/\.service$/, "");
}

/**
 * Turns off at boot every service with a boot link that is not in `before`:
 * `update-rc.d NAME disable` for one with an init script (it also disables
 * the systemd unit of that name), else `systemctl disable NAME`; a link
 * still there after that is removed. Returns the services. With another
 * `root` (tests), only the links are removed.
 */
export function disableNewBootServices(before: Set<string>, root = "/"): string[] {
  const services = new Set([...bootLinks(root)].filter((l) => !before.has(l)).map(serviceOfLink));
  if (root === "/") {
    for (const name of services) {
      if (existsSync(`/etc/init.d/${name}`)) spawnSync("update-rc.d", [name, "disable"], { stdio: "ignore" });
      else spawnSync("systemctl", ["disable", name], { stdio: "ignore" });
      // Started anyway (someone else's policy-rc.d allowed it, on a machine run by systemd): stopped.
      if (existsSync("/run/systemd/system")) spawnSync("systemctl", ["stop", name], { stdio: "ignore" });
    }
  }
  for (const link of bootLinks(root)) {
    if (before.has(link)) continue;
    try {
      unlinkSync(link);
    } catch {
      // gone meanwhile
    }
  }
  return [...services].sort();
}
