/**
 * The control plane's git remotes: one bare repository per app under the
 * data dir (`<data>/git/<tenant>/<app>.git`), served over smart HTTP by `git
 * http-backend` (http-backend.ts), and the hand-off of a push to whoever
 * deploys it.
 *
 *   git push ─► POST …/git-receive-pack ─► http-backend ─► receive-pack ─► hooks/pre-receive (pre-receive.mjs)
 *                                                                              │ unix socket: push id + ref updates
 *   remote: lines ◄── side band ◄── hook's stderr ◄── {line} … {exit} ◄── onPush(push, updates, io)
 *
 * The push id names the authenticated request the hook belongs to (tenant,
 * app, who): it is made per request, used once, and the socket sits in a
 * private (0700) directory. The new objects are still in git's quarantine
 * while the hook runs; `io.archive` reads them from there, and a hook that
 * exits non-zero leaves the ref as it was.
 */

import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, sep } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { HerdError } from "../common/errors.ts";
import { type CgiReply, type CgiRequest, runHttpBackend } from "./http-backend.ts";

const run = promisify(execFile);

/** Who pushes where: fixed when the push's request was authenticated. */
export interface Push {
  tenant: string;
  app: string;
  /** The principal's label (`user alice`): the deploy's createdBy. */
  actor: string;
}

/** One ref a push moves. An `old` of zeros creates the ref, a `new` of zeros deletes it. */
export interface RefUpdate {
  old: string;
  new: string;
  ref: string;
}

/** What a push handler is given. */
export interface PushIo {
  /** The tree of commit `sha` as a gzip tarball, read from the push's quarantine. */
  archive(sha: string): Readable;
  /** One line to the pusher (`remote: …`). */
  say(line: string): void;
  /** Aborted when the pusher's hook goes away. */
  signal: AbortSignal;
}

/** Decides a push: resolves to the hook's exit code (0 accepts the push). */
export type PushHandler = (push: Push, updates: RefUpdate[], io: PushIo) => Promise<number>;

const SHA = /^[0-9a-f]{40}$/;
const HOOK = fileURLToPath(new URL("./pre-receive.mjs", import.meta.url));
const HOOK_SCRIPT = `#!/bin/sh
# herd: hands the push to the control plane, which builds and releases it (src/git/pre-receive.mjs).
if [ -z "$HERD_NODE" ] || [ -z "$HERD_GIT_HOOK" ]; then
  echo "herd: push through the control plane's git remote" >&2
  exit 1
fi
exec "$HERD_NODE" "$HERD_GIT_HOOK"
`;

export class GitRepos {
  readonly root: string;
  readonly #onPush: PushHandler;
  #git: Promise<string> | undefined;
  #listener: Promise<{ server: Server; dir?: string; path: string }> | undefined;
  readonly #pushes = new Map<string, { push: Push; repo: string }>();
  readonly #sockets = new Set<Socket>();

  /** Nothing is created or installed until the first request. */
  constructor(root: string, onPush: PushHandler) {
    this.root = root;
    this.#onPush = onPush;
  }

  /** The repository's directory. */
  repoDir(tenant: string, app: string): string {
    return join(this.root, tenant, `${app}.git`);
  }

  /**
   * Serves one smart-HTTP request for an app's repository. `push` is given
   * for receive-pack (the caller checked the deploy permission): the
   * repository is made when missing and the push's hook reaches `onPush`.
   * Without it (fetch, clone) a missing repository is a 404.
   */
  async serve(
    tenant: string,
    app: string,
    req: Omit<CgiRequest, "pathInfo"> & { rest: string },
    options: { push?: Push; maxInputBytes?: number } = {},
  ): Promise<CgiReply> {
    const git = await this.#gitBinary();
    const repo = this.repoDir(tenant, app);
    if (options.push) await this.#ensureRepo(git, repo);
    else if (!existsSync(repo)) {
      throw new HerdError("not_found", `app ${app} has no git repository yet: git push to it first`);
    }
    const env: Record<string, string> = {};
    if (options.maxInputBytes !== undefined) {
      Object.assign(env, {
        GIT_CONFIG_COUNT: "1",
        GIT_CONFIG_KEY_0: "receive.maxInputSize",
        GIT_CONFIG_VALUE_0: String(options.maxInputBytes),
      });
    }
    let id: string | undefined;
    if (options.push && req.method === "POST") {
      const listener = await this.#listen();
      id = randomBytes(18).toString("base64url");
      this.#pushes.set(id, { push: options.push, repo });
      Object.assign(env, {
        HERD_GIT_SOCKET: listener.path,
        HERD_GIT_PUSH: id,
        HERD_NODE: process.execPath,
        HERD_GIT_HOOK: HOOK,
      });
    }
    let reply: CgiReply;
    try {
      reply = await runHttpBackend(
        git,
        this.root,
        { ...req, pathInfo: `/${tenant}/${app}.git/${req.rest}` },
        env,
      );
    } catch (err) {
      if (id) this.#pushes.delete(id);
      throw err;
    }
    if (id) {
      const pushId = id;
      reply.body.on("close", () => this.#pushes.delete(pushId));
    }
    return reply;
  }

  /** Stops taking hooks' connections and removes the socket. */
  async close(): Promise<void> {
    const listener = await this.#listener?.catch(() => undefined);
    for (const s of this.#sockets) s.destroy();
    if (listener) {
      await new Promise<void>((r) => listener.server.close(() => r()));
      await rm(listener.dir ?? listener.path, { recursive: true, force: true });
    }
  }

  #gitBinary(): Promise<string> {
    this.#git ??= (async () => {
      try {
        const { ensureDebianPackages } = await import("../common/debian-packages.ts");
        return (await ensureDebianPackages({ git: "git" })).git;
      } catch (err) {
        this.#git = undefined;
        throw new HerdError(
          "unavailable",
          `git is missing and could not be installed: ${(err as Error).message}; install Debian's git package`,
        );
      }
    })();
    return this.#git;
  }

  /** A bare repository with herd's hook (rewritten each time, so a newer herd's hook applies). */
  async #ensureRepo(git: string, repo: string): Promise<void> {
    if (!existsSync(join(repo, "HEAD"))) {
      await mkdir(repo, { recursive: true, mode: 0o700 });
      await run(git, ["init", "--quiet", "--bare", "--template=", "--initial-branch=main", repo], {
        env: {
          PATH: process.env.PATH,
          HOME: this.root,
          GIT_CONFIG_NOSYSTEM: "1",
          GIT_CONFIG_GLOBAL: "/dev/null",
        },
      });
      await run(git, ["--git-dir", repo, "config", "http.receivepack", "true"], {
        env: {
          PATH: process.env.PATH,
          HOME: this.root,
          GIT_CONFIG_NOSYSTEM: "1",
          GIT_CONFIG_GLOBAL: "/dev/null",
        },
      });
    }
    await mkdir(join(repo, "hooks"), { recursive: true });
    await writeFile(join(repo, "hooks", "pre-receive"), HOOK_SCRIPT);
    await chmod(join(repo, "hooks", "pre-receive"), 0o755);
  }

  #listen(): Promise<{ server: Server; dir?: string; path: string }> {
    this.#listener ??= (async () => {
      // In the repositories' root when the path fits a unix socket's 107 bytes: a server killed with
      // -9 leaves nothing in /tmp, and the next one replaces it. Else a short directory of its own.
      // Either way only this user connects: the socket is 0600.
      const inRoot = join(this.root, ".push.sock");
      let dir: string | undefined;
      let path = inRoot;
      if (Buffer.byteLength(inRoot) <= 100) {
        await mkdir(this.root, { recursive: true, mode: 0o700 });
        await rm(inRoot, { force: true });
      } else {
        dir = await mkdtemp(join(tmpdir(), "herd-git-"));
        await chmod(dir, 0o700);
        path = join(dir, "push.sock");
      }
      const server = createServer((socket) => this.#hookConnected(socket));
      await new Promise<void>((ok, fail) => {
        server.once("error", fail);
        server.listen(path, () => ok());
      });
      await chmod(path, 0o600);
      server.unref();
      return { server, ...(dir ? { dir } : {}), path };
    })();
    return this.#listener;
  }

  #hookConnected(socket: Socket): void {
    this.#sockets.add(socket);
    const abort = new AbortController();
    socket.on("close", () => {
      this.#sockets.delete(socket);
      abort.abort();
    });
    socket.on("error", () => {});
    socket.setEncoding("utf8");
    let buffered = "";
    const onData = (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf("\n");
      if (nl < 0) {
        if (buffered.length > 1024 * 1024) socket.destroy();
        return;
      }
      socket.off("data", onData);
      void this.#handleHook(socket, buffered.slice(0, nl), abort.signal);
    };
    socket.on("data", onData);
  }

  async #handleHook(socket: Socket, first: string, signal: AbortSignal): Promise<void> {
    const send = (message: { line: string } | { exit: number }) => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
    };
    const finish = (exit: number) => {
      send({ exit });
      socket.end();
    };
    let hello: {
      push?: unknown;
      updates?: unknown;
      objects?: unknown;
      alternates?: unknown;
      quarantine?: unknown;
    };
    try {
      hello = JSON.parse(first);
    } catch {
      return finish(1);
    }
    const pending = typeof hello.push === "string" ? this.#pushes.get(hello.push) : undefined;
    if (!pending) {
      send({ line: "herd: this push is not known to the control plane (it may have restarted): push again" });
      return finish(1);
    }
    this.#pushes.delete(hello.push as string);
    const updates = Array.isArray(hello.updates) ? (hello.updates as RefUpdate[]) : [];
    const valid = updates.every(
      (u) => SHA.test(u?.old) && SHA.test(u?.new) && typeof u.ref === "string" && u.ref.startsWith("refs/"),
    );
    const inRepo = (p: unknown) =>
      typeof p === "string" &&
      p.split(":").every((part) => part === "" || resolve(pending.repo, part).startsWith(pending.repo + sep));
    if (!valid || !inRepo(hello.objects) || !inRepo(hello.alternates) || !inRepo(hello.quarantine)) {
      send({ line: "herd: the hook sent a malformed push" });
      return finish(1);
    }
    const git = await this.#gitBinary();
    const objectsEnv = {
      GIT_DIR: pending.repo,
      ...(hello.objects ? { GIT_OBJECT_DIRECTORY: hello.objects as string } : {}),
      ...(hello.alternates ? { GIT_ALTERNATE_OBJECT_DIRECTORIES: hello.alternates as string } : {}),
      ...(hello.quarantine ? { GIT_QUARANTINE_PATH: hello.quarantine as string } : {}),
    };
    const io: PushIo = {
      archive: (sha) => archive(git, this.root, sha, objectsEnv),
      say: (line) => send({ line }),
      signal,
    };
    let exit = 1;
    try {
      exit = await this.#onPush(pending.push, updates, io);
    } catch (err) {
      send({ line: `herd: ${(err as Error).message}` });
    }
    finish(exit);
  }
}

/** `git archive --format=tar.gz SHA` as a stream; it errors when git fails. */
function archive(git: string, home: string, sha: string, env: Record<string, string>): Readable {
  if (!SHA.test(sha)) throw new HerdError("invalid", `not a commit id: ${sha}`);
  const out = new PassThrough();
  const child = spawn(git, ["archive", "--format=tar.gz", sha], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH,
      HOME: home,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      ...env,
    },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  child.stdout.pipe(out, { end: false });
  child.on("error", (err) => out.destroy(err));
  child.on("close", (code) => {
    if (code === 0) out.end();
    else out.destroy(new HerdError("invalid", `git archive ${sha.slice(0, 7)} failed: ${stderr.trim()}`));
  });
  out.on("close", () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return out;
}
