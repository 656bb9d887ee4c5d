/**
 * The process sandbox: how an instance (or a build) runs as an unprivileged
 * uid that sees only its own files and processes.
 *
 *   sh (root) ─ joins the cgroup(s) ─► exec unshare --mount (root, new mount namespace)
 *     ─► bind its app and data directories at VIEW_APP, VIEW_DATA (the data dir stays 0700 root: never reachable),
 *        its config (root's) at VIEW_CONFIG, each nosuid and nodev
 *     ─► private /proc (hidepid=2: only its own uid's processes), /tmp and /dev/shm (tmpfs)
 *     ─► cd; exec setpriv --reuid U --regid U --clear-groups --no-new-privs /bin/sh
 *     ─► (as U) the command's env from stdin, stdin /dev/null; exec /bin/sh -c <command>
 *
 * The root steps run with ROOT_ENV only: an app's env (LD_PRELOAD, PATH with its
 * node_modules/.bin first) would otherwise choose what root loads and runs. The
 * command's env reaches it as shell code on stdin (launchEnv), read after setpriv.
 *
 * Every step execs, so the pid the driver records is the command's own, as
 * without the sandbox; adoption after an agent restart works unchanged.
 * Needs root, util-linux's unshare and setpriv, and a kernel that lets root
 * mount inside a mount namespace; detectSandbox checks all three by doing it.
 */

import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import { lchown, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { findBinary } from "../common/debian-packages.ts";
import { ENV_NAME } from "../model/service-spec.ts";
import type { UidMap } from "./uids.ts";

const execFileAsync = promisify(execFile);

/** Root of what a sandboxed process sees of herd's directories (empty root-owned mount points on the host). */
export const SANDBOX_VIEW = "/run/herd-sandbox";
/** Where a sandboxed process sees its working directory (an instance's app, a build's source). */
export const VIEW_APP = `${SANDBOX_VIEW}/app`;
/** Where it sees its data directory (HERD_DATA_DIR; a build's HOME and npm cache). */
export const VIEW_DATA = `${SANDBOX_VIEW}/data`;
/** Where it sees the Node installation the app chose (engines.node), read-only: root owns it. */
export const VIEW_NODE = `${SANDBOX_VIEW}/node`;
/** Where it sees its config (HERD_CONFIG_FILE, HERD_CONFIG_DIR), read-only: root owns it. */
export const VIEW_CONFIG = `${SANDBOX_VIEW}/config`;
/** Where the host's /tmp is staged for a moment while the private one is mounted. */
const VIEW_HOST_TMP = `${SANDBOX_VIEW}/host-tmp`;
/**
 * herd's own directories a sandboxed command needs (the node binary, the
 * static server) when they are under /tmp, which the private /tmp would hide.
 */
const KEEP_UNDER_TMP = [
  ...new Set([resolve(import.meta.dirname, "../.."), dirname(realpathSync(process.execPath))]),
].filter((d) => d.startsWith("/tmp/") && !d.includes(":"));

/** Exit status when the wrapper cannot set up (125: "the wrapper failed", as in env and nohup). */
export const WRAPPER_FAILED = 125;

/** What this machine offers for sandboxing. */
export type SandboxSupport =
  | { enabled: true; unshare: string; setpriv: string }
  | { enabled: false; reason: string };

/** One sandboxed process: who it runs as and what it sees. */
export interface SandboxSpec {
  uid: number;
  /** Host directories bound inside, in order (a later view may lie inside an earlier one). */
  binds: { host: string; view: string }[];
  /** Working directory, as seen inside. */
  cwd: string;
  /** Size of the private /tmp and /dev/shm; their pages count against the memory cgroup. */
  tmpBytes: number;
  /**
   * A pid namespace of its own (only where ownPidsAllowed says the machine allows one): when the command
   * ends the kernel kills every process it left, even one in a new session, so nothing of it is
   * alive when root touches its tree next without a cgroup to kill (builds). Not for instances: their
   * command would be pid 1 there, which a SIGTERM without a handler does not stop.
   */
  ownPids?: boolean;
}

// Stage 1, on the host as root: join each cgroup.procs file, then become the rest of the arguments.
const JOIN_CGROUPS = `n=$1; shift
while [ "$n" -gt 0 ]; do
  echo $$ > "$1" || { echo "herd: cannot join cgroup $1" >&2; exit ${WRAPPER_FAILED}; }
  shift; n=$((n - 1))
done
exec "$@"`;

// Stage 2, as root inside the new mount namespace: mounts, then the command as the uid.
// $keep: directories under /tmp that stay visible through the private /tmp (herd itself, when
// it is installed there: its node binary and static server); the rest of the host's /tmp is gone.
const ENTER_SANDBOX = `cmd=$1 uid=$2 tmp=$3 cwd=$4 setpriv=$5 keep=$6 asuid=$7; shift 7
fail() { echo "herd: sandbox: $1" >&2; exit ${WRAPPER_FAILED}; }
while [ $# -gt 0 ]; do
  mount --bind "$1" "$2" || fail "cannot bind $1"
  mount -o remount,bind,nosuid,nodev "$2" || fail "cannot make $2 nosuid,nodev"
  shift 2
done
mount -t proc -o hidepid=2 proc /proc || fail "cannot mount a private /proc"
if [ -n "$keep" ]; then mount --bind /tmp ${VIEW_HOST_TMP} || fail "cannot stage /tmp"; fi
mount -t tmpfs -o size=$tmp,mode=1777,nosuid,nodev herd-tmp /tmp || fail "cannot mount a private /tmp"
if [ -n "$keep" ]; then
  IFS=:
  for p in $keep; do
    mkdir -p "$p" && mount --bind "${VIEW_HOST_TMP}\${p#/tmp}" "$p" || fail "cannot keep $p"
  done
  unset IFS
  umount -l ${VIEW_HOST_TMP} || fail "cannot unstage /tmp"
fi
if [ -d /dev/shm ]; then mount -t tmpfs -o size=$tmp,mode=1777,nosuid,nodev herd-shm /dev/shm || fail "cannot mount /dev/shm"; fi
cd "$cwd" || fail "cannot enter $cwd"
exec "$setpriv" --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs /bin/sh -c "$asuid" herd-app "$cmd"`;

// Stage 3, as the uid: the command's env from stdin (launchEnv's script), then the command with
// stdin /dev/null. A script cut short (its writer gone) lacks its last line: nothing starts.
const AS_UID = `eval "$(cat)"; exec </dev/null
[ "$herd_env_read" = 1 ] || { echo "herd: sandbox: the environment did not arrive whole" >&2; exit ${WRAPPER_FAILED}; }
unset herd_env_read; exec /bin/sh -c "$1"`;

/** The system's PATH: the root steps', and an instance's after its own bins when its service sets none. */
export const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The environment of the root steps: nothing an app chose. */
export const ROOT_ENV: Readonly<Record<string, string>> = { PATH: SYSTEM_PATH };

/**
 * How to spawn launchArgs' /bin/sh with `env` for the command: without a
 * sandbox, as it is; with one, the root steps get ROOT_ENV and `env` goes
 * as shell code to write to the child's stdin (a name no shell can export
 * is left out; values are single-quoted, so any byte but NUL arrives as it is).
 */
export function launchEnv(
  env: Record<string, string>,
  sandboxed: boolean,
): { env: Record<string, string>; stdin?: string } {
  if (!sandboxed) return { env };
  const lines = Object.entries(env)
    .filter(([name]) => ENV_NAME.test(name))
    .map(([name, value]) => `export ${name}='${value.replaceAll("'", "'\\''")}'`);
  return { env: { ...ROOT_ENV }, stdin: `${lines.join("\n")}\nherd_env_read=1\n` };
}

/**
 * The arguments for `/bin/sh` that run `command` in the given cgroups and,
 * when `sandbox` is given, inside the sandbox; under `policy` (chrt and its
 * arguments, cpu-policy.ts policyLauncher: a policy every process and thread
 * it starts inherits). Spawn it as launchEnv says (and, without a sandbox,
 * in the command's cwd).
 */
export function launchArgs(
  command: string,
  cgroupProcs: string[],
  sandbox?: { support: Extract<SandboxSupport, { enabled: true }>; spec: SandboxSpec },
  policy: readonly string[] = [],
): string[] {
  const run = sandbox
    ? [
        sandbox.support.unshare,
        "--mount",
        "--propagation",
        "private",
        // The mounts below (its /proc too) are made in the forked child, pid 1 of the new namespace.
        ...(sandbox.spec.ownPids ? OWN_PIDS : []),
        "/bin/sh",
        "-c",
        ENTER_SANDBOX,
        "herd-sandbox",
        command,
        String(sandbox.spec.uid),
        String(Math.max(1024 * 1024, Math.round(sandbox.spec.tmpBytes))),
        sandbox.spec.cwd,
        sandbox.support.setpriv,
        KEEP_UNDER_TMP.join(":"),
        AS_UID,
        ...sandbox.spec.binds.flatMap((b) => [b.host, b.view]),
      ]
    : ["/bin/sh", "-c", command];
  return ["-c", JOIN_CGROUPS, "herd-instance", String(cgroupProcs.length), ...cgroupProcs, ...policy, ...run];
}

/** unshare's arguments for a pid namespace of the command's own (SandboxSpec.ownPids). */
const OWN_PIDS = ["--pid", "--fork", "--kill-child"];

/**
 * Whether SandboxSpec.ownPids may be asked for here: root may make a pid namespace almost
 * everywhere, but a container may forbid it. Tried once, by the one that asks (builds).
 */
export function ownPidsAllowed(support: Extract<SandboxSupport, { enabled: true }>): boolean {
  return spawnSync(support.unshare, [...OWN_PIDS, "/bin/true"], { timeout: 10_000 }).status === 0;
}

/**
 * Whether this machine can sandbox: root, unshare and setpriv, and a mount
 * namespace where root may bind, mount proc with hidepid and a tmpfs, and drop
 * to an unprivileged uid (tried once, for real).
 */
export function detectSandbox(): SandboxSupport {
  if (process.getuid?.() !== 0) return { enabled: false, reason: "not running as root" };
  const unshare = findBinary("unshare");
  const setpriv = findBinary("setpriv");
  if (!unshare || !setpriv) {
    return { enabled: false, reason: "unshare or setpriv not found (Debian package util-linux)" };
  }
  const support = { enabled: true as const, unshare, setpriv };
  const probeDir = mkdtempSync(join(tmpdir(), "herd-sandbox-probe-"));
  try {
    for (const dir of [VIEW_APP, VIEW_DATA, VIEW_NODE, VIEW_CONFIG, VIEW_HOST_TMP])
      mkdirSync(dir, { recursive: true, mode: 0o755 });
    const spec: SandboxSpec = {
      uid: 65534,
      binds: [{ host: probeDir, view: VIEW_APP }],
      cwd: VIEW_APP,
      tmpBytes: 1 << 20,
    };
    // As nobody: only its own processes are in /proc (not pid 1), /tmp is writable, and herd's
    // node runs (instances start with it; a node under root's 0700 home would fail every app).
    const check = `test ! -e /proc/1/environ && test -w /tmp && "${process.execPath}" -e 0`;
    const launch = launchEnv({ ...ROOT_ENV }, true);
    const r = spawnSync("/bin/sh", launchArgs(check, [], { support, spec }), {
      encoding: "utf8",
      timeout: 10_000,
      env: launch.env,
      input: launch.stdin,
    });
    if (r.status !== 0) {
      const why = (r.stderr || r.error?.message || `exited with ${r.status}`).trim().split("\n")[0];
      return {
        enabled: false,
        reason: `a test run as uid 65534 in a mount namespace failed (${why}); is ${process.execPath} readable by other users?`,
      };
    }
    return support;
  } catch (err) {
    return { enabled: false, reason: `cannot prepare ${SANDBOX_VIEW}: ${(err as Error).message}` };
  } finally {
    rmSync(probeDir, { recursive: true, force: true });
  }
}

/**
 * Gives `dir` and everything below it to uid (group uid too). Symlinks
 * themselves are changed, never what they point at.
 */
export async function chownTree(dir: string, uid: number): Promise<void> {
  await lchown(dir, uid, uid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(path, uid);
    else await lchown(path, uid, uid);
  }
}

/**
 * Gives each of `dirs` and everything below to uid with coreutils' `chown -R`,
 * which walks relative to open directories and never through a link: a
 * process of the tenant still alive (a node without cgroups to kill it
 * first) cannot swap a directory for a link to have root chown what it names,
 * as it could between chownTree's readdir and lchown by path. A fork of the
 * agent per call (10–25 ms), so only where such a process can be alive.
 */
export async function chownTreeSafely(dirs: string[], uid: number): Promise<void> {
  await execFileAsync("chown", ["-R", "-P", "--no-dereference", `${uid}:${uid}`, "--", ...dirs], {
    env: { ...ROOT_ENV },
  });
}

/**
 * Removes `path` and everything below with coreutils' `rm -rf`, which, as
 * chownTreeSafely, never follows a link a process of the tenant put in place
 * of a directory while it runs (Node's recursive fs.rm walks by path).
 */
export async function removeTree(path: string): Promise<void> {
  await execFileAsync("rm", ["-rf", "--one-file-system", "--", path], { env: { ...ROOT_ENV } });
}

/**
 * The uid of the spec's tenant ("default" when it names none), which is
 * given the instance's app dir and data dir (made if missing): what a
 * sandboxed process, or a container run as that uid, writes. `survivors`:
 * a process of the instance may outlive its stop (no cgroups), so the
 * dirs are walked with chownTreeSafely.
 */
export async function ownInstanceDirs(
  uids: UidMap,
  spec: { tenant?: string; dir: string; dataDir?: string },
  survivors = false,
): Promise<number> {
  const uid = uids.uidOf(spec.tenant ?? "default");
  if (spec.dataDir) {
    setAsideForeign(uids, uid, spec.dataDir);
    mkdirSync(spec.dataDir, { recursive: true });
  }
  const dirs = spec.dataDir ? [spec.dir, spec.dataDir] : [spec.dir];
  if (survivors) await chownTreeSafely(dirs, uid);
  else for (const dir of dirs) await chownTree(dir, uid);
  return uid;
}

/**
 * A data dir another tenant's uid owns is never handed over (chowned) to
 * this one: it is renamed aside (`<dir>.tenant-<other>-<ms>`, kept for its
 * owner's admin) and the instance gets an empty one. Pet ids name their
 * tenant and a destroyed app's volumes go with it, so this meets only a
 * volume left behind by an app destroyed before that (isolation.md).
 * Returns where it was moved.
 */
export function setAsideForeign(uids: UidMap, uid: number, dataDir: string): string | undefined {
  let owner: number;
  try {
    owner = statSync(dataDir).uid;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const other = owner === uid ? undefined : uids.keyOf(owner);
  if (other === undefined) return undefined;
  const aside = `${dataDir}.tenant-${other}-${Date.now()}`;
  renameSync(dataDir, aside);
  return aside;
}

/**
 * The environment as the sandboxed process sees it: every path element
 * (values split at ':', as in PATH) under a bound host directory is rewritten
 * to where that directory appears inside.
 */
export function viewEnv(env: Record<string, string>, binds: SandboxSpec["binds"]): Record<string, string> {
  // Longest host path first, so a bind inside another (a pet's volume) wins.
  const ordered = [...binds].sort((a, b) => b.host.length - a.host.length);
  const mapOne = (element: string): string => {
    for (const b of ordered) {
      if (element === b.host) return b.view;
      if (element.startsWith(`${b.host}/`)) return b.view + element.slice(b.host.length);
    }
    return element;
  };
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) out[key] = value.split(":").map(mapOne).join(":");
  return out;
}
