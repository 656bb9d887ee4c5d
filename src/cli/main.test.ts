import assert from "node:assert/strict";
import type { ServerResponse } from "node:http";
import { after, before, beforeEach, describe, it } from "node:test";
import { main } from "./main.ts";
import { type RecordedRequest, sendJson, startTestApi, type TestApi } from "./test-api.ts";

const NOW = Date.parse("2026-01-01T12:00:00Z");

/** Captured output of one run. */
function capture() {
  let text = "";
  return {
    write(s: string) {
      text += s;
      return true;
    },
    get text() {
      return text;
    },
  };
}

describe("herd main", () => {
  let api: TestApi;
  let respond: (req: RecordedRequest, res: ServerResponse) => void | Promise<void>;

  before(async () => {
    api = await startTestApi((req, res) => respond(req, res));
  });
  after(() => api.close());
  beforeEach(() => {
    api.requests.length = 0;
    respond = (_req, res) => sendJson(res, 404, { code: "not_found", message: "no such thing" });
  });

  async function run(argv: string[], options: { tty?: boolean; interrupt?: () => AbortSignal } = {}) {
    const stdout = capture();
    const stderr = capture();
    const code = await main(argv, {
      stdout,
      stderr,
      env: { HERD_SERVER: api.url, HERD_TOKEN: "tok" },
      cwd: "/",
      home: "/nonexistent",
      stdinIsTTY: options.tty ?? false,
      now: () => NOW,
      interrupt: options.interrupt,
    });
    return { code, out: stdout.text, err: stderr.text };
  }

  it("prints help and rejects unknown commands with exit 2", async () => {
    assert.match((await run([])).out, /Usage: herd COMMAND/);
    const overview = (await run(["help"])).out;
    assert.match(overview, /\nTeams and access:\n {2}login +Sign in with a token; later commands use it\.\n/);
    for (const name of [
      "logout",
      "whoami",
      "tokens",
      "users",
      "tenants",
      "members",
      "service-accounts",
      "audit",
    ])
      assert.match(overview, new RegExp(`\\n {2}${name} +[A-Z]`), name);
    assert.match(
      (await run(["help", "members"])).out,
      /^Usage: herd members \[--tenant T\]\n +herd members add USER --role/,
    );
    const help = await run(["scale", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: herd scale SERVICE=COUNT… \[--app NAME\]/);
    assert.match((await run(["help", "logs"])).out, /-f, --follow/);
    const unknown = await run(["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /^herd: unknown command: frobnicate\n/);
    const badFlag = await run(["ps", "--bogus"]);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.err, /^herd: unknown flag --bogus\n[\s\S]*usage: herd ps/);
    const dashValue = await run(["logs", "--app", "hello", "--tail", "-3"]);
    assert.equal(dashValue.code, 2);
    assert.match(
      dashValue.err,
      /^herd: --tail needs a value; for one that starts with "-", write --tail=VALUE\n/,
    );
    assert.match((await run(["logs", "--app", "hello", "--grep"])).err, /^herd: --grep needs a value\n/);
    assert.match((await run(["ps", "-a"])).err, /^herd: --app needs a value\n/);
    assert.match(
      (await run(["ps", "-a", "-x"])).err,
      /^herd: -a needs a value; for one that starts with "-", write --app=VALUE\n/,
    );
  });

  it("takes -a NAME for --app NAME, as heroku does", async () => {
    respond = (_req, res) =>
      sendJson(res, 200, {
        items: [{ name: "web", instances: 3, release: 2, state: "scaling", message: "" }],
      });
    const r = await run(["scale", "web=3", "-a", "hello"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(api.requests[0].url, "/api/v1/apps/hello/scale");
    assert.match((await run(["help"])).out, /-a NAME +the same as --app NAME/);
  });

  it("rejects a bad scale before calling the server", async () => {
    const r = await run(["scale", "web=-1", "--app", "hello"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /web=-1: the count cannot be negative/);
    assert.equal(api.requests.length, 0);
  });

  it("asks for --app when there is no herd.yaml", async () => {
    const r = await run(["ps"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /pass --app NAME/);
  });

  it("scales and shows the services", async () => {
    respond = (_req, res) =>
      sendJson(res, 200, {
        items: [{ name: "web", instances: 3, release: 2, state: "scaling", message: "" }],
      });
    const r = await run(["scale", "web=3", "--app", "hello"]);
    assert.equal(r.code, 0);
    assert.equal(api.requests[0].url, "/api/v1/apps/hello/scale");
    assert.deepEqual(JSON.parse(api.requests[0].body.toString()), { services: { web: 3 } });
    assert.match(r.out, /^SERVICE +INSTANCES +RELEASE +STATE +MESSAGE\nweb +3 +v2 +scaling +-\n$/);
  });

  it("says how many of the asked instances cannot be placed, and why; the scale itself succeeded", async () => {
    const message =
      "8 of 12 instances cannot be placed: needs 3.0 CPU, 1.0 free on 1 node: vm 1.0 free of 1.0";
    respond = (_req, res) =>
      sendJson(res, 200, {
        items: [{ name: "web", instances: 12, release: 2, state: "scaling", message: "" }],
        unplaced: [{ service: "web", unplaced: 8, of: 12, message }],
      });
    const r = await run(["scale", "web=12", "--app", "hello"]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^SERVICE +INSTANCES +RELEASE +STATE +MESSAGE\nweb +12 +v2 +scaling +-\n$/);
    assert.equal(
      r.err,
      `herd: web: ${message}. They wait as pending until there is room (herd ps shows them).\n`,
    );
  });

  it("says when a scaled service is autoscaled: the count it got and that the autoscaler may change it", async () => {
    const warning = "web is autoscaled between 1 and 5: 9 became 5; the autoscaler may change it";
    respond = (_req, res) =>
      sendJson(res, 200, {
        items: [{ name: "web", instances: 5, release: 2, state: "scaling", message: "" }],
        unplaced: [],
        warnings: [warning],
      });
    const r = await run(["scale", "web=9", "--app", "hello"]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^SERVICE +INSTANCES +RELEASE +STATE +MESSAGE\nweb +5 +v2 +scaling +-\n$/);
    assert.equal(r.err, `herd: ${warning}.\n`);
  });

  it("shows autoscale status: services, then their decisions", async () => {
    respond = (_req, res) =>
      sendJson(res, 200, {
        items: [
          {
            service: "web",
            instances: 2,
            min: 1,
            max: 5,
            target: { metric: "concurrency", value: 10 },
            mode: "stable",
            stable: 14,
            panic: 12,
            stableWindowMs: 60000,
            panicWindowMs: 6000,
            scaleDownDelayMs: 300000,
            stableWant: 2,
            panicWant: 2,
            decisions: [],
          },
        ],
      });
    const r = await run(["autoscale", "status", "--app", "hello"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(api.requests[0].url, "/api/v1/apps/hello/autoscale");
    assert.match(
      r.out,
      /^web +2 +1\.\.5 +10 in flight per instance +stable +14 in flight → 2 \(60s\) +12 in flight → 2 \(6s\) +-$/m,
    );
    assert.match(r.out, /web: no decision has changed its count yet\./);
    // status is the default action, of rollout too.
    const bare = await run(["autoscale", "-a", "hello"]);
    assert.equal(bare.code, 0, bare.err);
    assert.equal(bare.out, r.out);
    respond = (_req, res) => sendJson(res, 200, { items: [] });
    assert.equal((await run(["rollout", "-a", "hello"])).code, 0);
    assert.equal(api.requests.at(-1)?.url, "/api/v1/apps/hello/rollout");
    assert.match(
      (await run(["rollout", "go", "-a", "hello"])).err,
      /unknown rollout action: go \(one of status/,
    );
  });

  it("prints the API's JSON with --json and its errors on stderr", async () => {
    const reply = { items: [] };
    respond = (_req, res) => sendJson(res, 200, reply);
    const r = await run(["--json", "ps", "--app", "hello"]);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.out), reply);
    respond = (_req, res) => sendJson(res, 404, { code: "not_found", message: "app nope not found" });
    const missing = await run(["ps", "--app", "nope"]);
    assert.equal(missing.code, 1);
    assert.equal(missing.err, "herd: app nope not found\n");
  });

  it("refuses to destroy without confirmation when stdin is not a terminal", async () => {
    const refused = await run(["apps", "destroy", "hello"]);
    assert.equal(refused.code, 2);
    assert.match(refused.err, /refusing to destroy the app hello without confirmation: pass --confirm hello/);
    const mismatch = await run(["apps", "destroy", "hello", "--confirm", "other"]);
    assert.equal(mismatch.code, 2);
    assert.equal(api.requests.length, 0);
    respond = (_req, res) => sendJson(res, 202, { app: "hello" });
    const done = await run(["apps", "destroy", "hello", "--confirm", "hello"]);
    assert.equal(done.code, 0);
    assert.equal(api.requests[0].method, "DELETE");
    assert.equal(api.requests[0].url, "/api/v1/apps/hello");
  });

  it("follows a rollback's log to success", async () => {
    respond = (req, res) => {
      if (req.method === "POST") {
        assert.deepEqual(JSON.parse(req.body.toString()), { version: 1 });
        return sendJson(res, 202, { id: "d1", app: "hello", state: "rolling_out", message: "" });
      }
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(
        [
          { time: "t", type: "step", message: "Rolling out v3 (content of v1)" },
          { time: "t", type: "build", message: "reusing slug" },
          {
            time: "t",
            type: "done",
            state: "succeeded",
            message: "v3 is serving at http://hello.localhost:8080",
          },
        ]
          .map((e) => JSON.stringify(e))
          .join("\n"),
      );
    };
    const r = await run(["rollback", "v1", "--app", "hello"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(api.requests[1].url, "/api/v1/apps/hello/deploys/d1/log");
    assert.equal(
      r.out,
      "-----> Rolling back hello to v1 (deploy d1)\n-----> Rolling out v3 (content of v1)\n       reusing slug\n-----> v3 is serving at http://hello.localhost:8080\n",
    );
  });

  it("exits 1 with the message when the deploy fails", async () => {
    respond = (req, res) => {
      if (req.method === "POST")
        return sendJson(res, 202, { id: "d2", app: "hello", state: "rolling_out", message: "" });
      res
        .writeHead(200)
        .end(
          `${JSON.stringify({ time: "t", type: "done", state: "failed", message: "v3 never became healthy" })}\n`,
        );
    };
    const r = await run(["rollback", "--app", "hello"]);
    assert.equal(r.code, 1);
    assert.equal(r.err, "herd: v3 never became healthy\n");
  });

  it("follows logs across a dropped connection without repeating lines", async () => {
    const line = (time: string, text: string) =>
      JSON.stringify({
        seq: Number(time.slice(17, 19)),
        instance: "i1",
        time,
        stream: "stdout",
        line: text,
        app: "hello",
        service: "web",
      });
    let calls = 0;
    respond = (req, res) => {
      // --service web is checked first: the app has it.
      if (appDetail(req, res, ["web"], [])) return;
      calls++;
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      if (calls === 1) {
        res.write(`${line("2026-01-01T12:00:01.000Z", "one")}\n${line("2026-01-01T12:00:02.000Z", "two")}\n`);
        setTimeout(() => res.socket?.destroy(), 20);
      } else {
        assert.match(req.url, /after=2/);
        res.write(
          `${line("2026-01-01T12:00:02.000Z", "two")}\n${line("2026-01-01T12:00:03.000Z", "three")}\n`,
        );
      }
    };
    const controller = new AbortController();
    const running = run(["logs", "-f", "--app", "hello", "--service", "web"], {
      interrupt: () => controller.signal,
    });
    // Stop (as Ctrl-C would) shortly after the stream was reopened.
    for (let i = 0; i < 100 && calls < 2; i++) await new Promise((done) => setTimeout(done, 50));
    await new Promise((done) => setTimeout(done, 100));
    controller.abort();
    const result = await running;
    assert.equal(result.code, 0);
    assert.equal(
      result.out,
      "2026-01-01T12:00:01.000Z web.i1 | one\n2026-01-01T12:00:02.000Z web.i1 | two\n2026-01-01T12:00:03.000Z web.i1 | three\n",
    );
    assert.match(result.err, /reconnecting/);
    const logs = api.requests.filter((r) => r.url.startsWith("/api/v1/apps/hello/logs"));
    assert.match(logs[0].url, /follow=true/);
    assert.match(logs[0].url, /service=web/);
  });

  /** Answers GET /apps/hello and its instances (herd logs checks --service and --instance there); false for other requests. */
  function appDetail(req: RecordedRequest, res: ServerResponse, services: string[], instances: string[][]) {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/api/v1/apps") {
      sendJson(res, 200, { items: [{ name: "hello" }] });
      return true;
    }
    if (path === "/api/v1/apps/hello") {
      sendJson(res, 200, { app: { name: "hello" }, services: services.map((name) => ({ name })) });
      return true;
    }
    if (path === "/api/v1/apps/hello/instances") {
      sendJson(res, 200, { items: instances.map(([id, service]) => ({ id, service, app: "hello" })) });
      return true;
    }
    return false;
  }

  it("logs --service and --instance that name nothing are errors naming what there is", async () => {
    const withLines = new Set(["gone-1"]);
    respond = (req, res) => {
      if (
        appDetail(
          req,
          res,
          ["web", "worker"],
          [
            ["hello-web-a1", "web"],
            ["hello-worker-b2", "worker"],
          ],
        )
      )
        return;
      const q = new URL(req.url, "http://x").searchParams;
      const lines = withLines.has(q.get("instance") ?? "")
        ? [
            {
              seq: 1,
              time: "t",
              line: "bye",
              instance: "gone-1",
              service: "web",
              app: "hello",
              stream: "stdout",
            },
          ]
        : [];
      sendJson(res, 200, { items: lines });
    };
    const service = await run(["logs", "--app", "hello", "--service", "nope"]);
    assert.equal(service.code, 1);
    assert.equal(
      service.err,
      "herd: no service nope in app hello (nor log lines from one); the services: web, worker\n",
    );
    const instance = await run(["logs", "--app", "hello", "--instance", "nope", "-f"]);
    assert.equal(instance.code, 1);
    assert.equal(
      instance.err,
      "herd: no instance nope in app hello (nor log lines from one); the instances: hello-web-a1 (web), hello-worker-b2 (worker)\n",
    );
    const all = await run(["logs", "--all", "--service", "nope"]);
    assert.equal(
      all.err,
      "herd: no service nope in any app (nor log lines from one); the services: hello/web, hello/worker\n",
    );
    const ofService = await run(["logs", "--app", "hello", "--service", "web", "--instance", "nope"]);
    assert.match(ofService.err, /the instances of web: hello-web-a1 \(web\)\n$/);
    // An instance that is gone but left lines is fine; one written as log lines show it (web.ID) too.
    const gone = await run(["logs", "--app", "hello", "--instance", "gone-1"]);
    assert.equal(gone.code, 0, gone.err);
    assert.match(gone.out, /web\.gone-1 \| bye/);
    api.requests.length = 0;
    const dotted = await run(["logs", "--app", "hello", "--instance", "web.hello-web-a1"]);
    assert.equal(dotted.code, 0, dotted.err);
    assert.equal(
      new URL(api.requests.at(-1)?.url ?? "", "http://x").searchParams.get("instance"),
      "hello-web-a1",
    );
  });

  it("passes the log filters to the API and checks them first", async () => {
    respond = (_req, res) => sendJson(res, 200, { items: [] });
    const r = await run([
      "logs",
      "--app",
      "hello",
      "--level",
      "WARN",
      "--grep",
      "cart slow",
      "--stream",
      "stderr",
      "--since",
      "1h",
      "-n",
      "20",
    ]);
    assert.equal(r.code, 0, r.err);
    const url = new URL(api.requests[0].url, "http://x");
    assert.equal(url.pathname, "/api/v1/apps/hello/logs");
    assert.equal(url.searchParams.get("level"), "warn");
    assert.equal(url.searchParams.get("text"), "cart slow");
    assert.equal(url.searchParams.get("stream"), "stderr");
    assert.ok(Math.abs(Date.parse(url.searchParams.get("since")!) - (Date.now() - 3600_000)) < 60_000);
    assert.equal(url.searchParams.get("tail"), "20", "-n is --tail, as in heroku logs -n");
    const all = await run(["logs", "--all"]);
    assert.equal(all.code, 0, all.err);
    assert.equal(new URL(api.requests[1].url, "http://x").pathname, "/api/v1/logs");
    const bad = await run(["logs", "--app", "hello", "--level", "loud"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--level must be one of/);
    assert.equal(api.requests.length, 2);
  });
});
