/**
 * Deploy by `git push`: each app's git remote, served over smart HTTP
 * (git/repos.ts runs Debian git's `git http-backend`), at
 *
 *   http(s)://<server>/api/v1/tenants/<tenant>/git/<app>.git
 *
 * authenticated with a herd token as the HTTP basic-auth password. Fetching
 * needs apps:read; pushing needs apps:write (a deployer) in the tenant. A
 * pushed branch is built and released through the same path as `herd deploy`
 * (apps.ts deploySource); the pusher sees the build and rollout as
 * `remote:` lines, and a deploy that fails refuses the push. See
 * docs/releases.md.
 */

import type { Readable } from "node:stream";
import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { formatDeployEntry } from "../../common/deploy-log-format.ts";
import { HerdError } from "../../common/errors.ts";
import { GitRepos, type Push, type PushHandler } from "../../git/repos.ts";
import type { Tenant } from "../../model/objects.ts";
import { whenServed } from "../deploy-done.ts";
import type { ApiDeps } from "../deps.ts";
import { decide } from "../permissions.ts";
import { Name, tenantOf } from "../schemas.ts";
import { deploySource } from "./apps.ts";
import { actorOf } from "./secrets.ts";

const ZERO = "0".repeat(40);

const RepoParams = T.Object({
  name: Name,
  repo: T.String({ pattern: "^[a-z][a-z0-9-]{0,39}(\\.git)?$", description: "the app, as app.git or app" }),
});
const RefsQuery = T.Object({
  service: T.Union([T.Literal("git-upload-pack"), T.Literal("git-receive-pack")], {
    description: "smart HTTP only (git 1.6.6 and later always asks for one)",
  }),
});

export function gitRoutes(api: FastifyInstance, deps: ApiDeps): void {
  const repos = new GitRepos(deps.gitDir, pushDeploy(deps));
  deps.shutdown.addEventListener("abort", () => void repos.close(), { once: true });

  api.register(async (git) => {
    // The pack streams through to http-backend as it arrives (it may be gzip: http-backend inflates it).
    git.addContentTypeParser(
      ["application/x-git-upload-pack-request", "application/x-git-receive-pack-request"],
      (_req, payload, done) => done(null, payload),
    );
    // git asks for credentials (a credential helper, or a prompt) only after a 401 that names Basic,
    // and shows a text/plain error body to its user as `remote:` lines: git gets its errors as text,
    // every other client the JSON {code, message} of the rest of the API.
    git.addHook("onSend", async (req, reply, payload) => {
      if (reply.statusCode < 400 || typeof payload !== "string") return payload;
      if (reply.statusCode === 401) reply.header("www-authenticate", 'Basic realm="herd", charset="UTF-8"');
      if (!req.headers["user-agent"]?.startsWith("git/")) return payload;
      reply.type("text/plain; charset=utf-8");
      return `herd: ${messageOf(payload)}\n`;
    });

    const serve = async (
      req: FastifyRequest,
      reply: FastifyReply,
      rest: string,
      service: "git-upload-pack" | "git-receive-pack",
    ) => {
      const tenant = tenantOf(req);
      const app = appOf(req);
      const type = req.headers["content-type"] ?? "";
      if (req.method === "POST" && type !== `application/x-${service}-request`) {
        throw new HerdError(
          "invalid",
          `the body of ${service} is git's (content-type: application/x-${service}-request)`,
          [{ field: "content-type", message: `is ${type || "missing"}` }],
        );
      }
      let push: Push | undefined;
      let maxInputBytes: number | undefined;
      if (service === "git-receive-pack") {
        // GET info/refs serves both directions: a push's first request needs the deploy permission too.
        decide(req.herd.principal, "apps:write", { tenant });
        push = { tenant, app, actor: actorOf(req) };
        const limits = (await deps.store.get<Tenant>("tenant", tenant))?.value.limits ?? {};
        maxInputBytes = limits.uploadBytes ?? deps.maxUploadBytes;
      }
      const headers = req.headers;
      const answer = await repos.serve(
        tenant,
        app,
        {
          method: req.method,
          rest,
          query: req.url.includes("?") ? req.url.slice(req.url.indexOf("?") + 1) : "",
          ...(headers["content-type"] ? { contentType: headers["content-type"] } : {}),
          ...(headers["content-length"] ? { contentLength: headers["content-length"] } : {}),
          ...(typeof headers["content-encoding"] === "string"
            ? { contentEncoding: headers["content-encoding"] }
            : {}),
          ...(typeof headers["git-protocol"] === "string" ? { gitProtocol: headers["git-protocol"] } : {}),
          remoteUser: req.herd.principal.label.replace(/[^\w .@-]/g, "_"),
          remoteAddr: req.socket.remoteAddress ?? "",
          ...(req.method === "POST" ? { body: req.body as Readable } : {}),
        },
        { ...(push ? { push } : {}), ...(maxInputBytes !== undefined ? { maxInputBytes } : {}) },
      );
      reply.code(answer.status);
      for (const [name, value] of Object.entries(answer.headers)) reply.header(name, value);
      return reply.send(answer.body);
    };

    git.get(
      "/tenants/:name/git/:repo/info/refs",
      {
        schema: {
          summary: "git's ref advertisement (the first request of a fetch or a push)",
          description:
            "The app's git remote over smart HTTP. Basic auth with a herd token as the password. `service=git-receive-pack` (a push) needs apps:write.",
          tags: ["deploys"],
          params: RepoParams,
          querystring: RefsQuery,
        },
      },
      (req, reply) => serve(req, reply, "info/refs", (req.query as { service: "git-upload-pack" }).service),
    );
    git.post(
      "/tenants/:name/git/:repo/git-upload-pack",
      {
        schema: {
          summary: "git fetch and clone of the app's repository",
          tags: ["deploys"],
          params: RepoParams,
        },
      },
      (req, reply) => serve(req, reply, "git-upload-pack", "git-upload-pack"),
    );
    git.post(
      "/tenants/:name/git/:repo/git-receive-pack",
      {
        schema: {
          summary:
            "git push: the pushed branch is built and released; the build streams back as remote: lines",
          description:
            "One branch per push. A deploy that fails refuses the push (the ref keeps its old commit). Tags and deletions are taken without a deploy.",
          tags: ["deploys"],
          params: RepoParams,
        },
      },
      (req, reply) => serve(req, reply, "git-receive-pack", "git-receive-pack"),
    );
  });
}

/** The app a git URL names (`web.git` or `web`). */
const appOf = (req: FastifyRequest): string => (req.params as { repo: string }).repo.replace(/\.git$/, "");

const messageOf = (payload: string): string => {
  try {
    return (JSON.parse(payload) as { message?: string }).message ?? payload;
  } catch {
    return payload;
  }
};

/**
 * A push's deploy: the one branch it moves is archived from the push and
 * deployed as `herd deploy` would; its log goes back to the pusher line by
 * line, and the deploy's outcome decides the push.
 */
export function pushDeploy(deps: ApiDeps): PushHandler {
  return async (push, updates, io) => {
    const branches = updates.filter((u) => u.ref.startsWith("refs/heads/") && u.new !== ZERO);
    if (branches.length === 0) {
      io.say("herd: no branch to deploy in this push (tags and deletions are kept as they are)");
      return 0;
    }
    if (branches.length > 1) {
      const names = branches.map((u) => u.ref.slice("refs/heads/".length)).join(", ");
      io.say(`herd: push one branch at a time: this push moves ${names}; nothing was deployed`);
      return 1;
    }
    const update = branches[0];
    const branch = update.ref.slice("refs/heads/".length);
    const short = update.new.slice(0, 7);
    io.say(`-----> Deploying ${branch} (${short}) to app ${push.app} of tenant ${push.tenant}`);
    const deploy = await deploySource(deps, {
      tenant: push.tenant,
      app: push.app,
      body: io.archive(update.new),
      length: 0,
      createdBy: push.actor,
      description: `git push ${branch} ${short}`,
    });
    io.say(`-----> Deploy ${deploy.id}`);
    for await (const entry of deps.deployLogs.follow(deploy.id, io.signal)) {
      if (entry.type !== "done") {
        io.say(formatDeployEntry(entry));
        continue;
      }
      if (entry.state === "succeeded") {
        io.say(`-----> ${(await whenServed(deps.gateways, entry, io.signal)).message}`);
        return 0;
      }
      io.say(`herd: deploy ${deploy.id} failed: ${entry.message}`);
      io.say("herd: the push is refused; the app keeps its running release");
      return 1;
    }
    return 1; // the pusher went away; the deploy goes on (herd deploys --app shows it)
  };
}
