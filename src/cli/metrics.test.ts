import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type RecordedRequest, runCli, sendJson, startTestApi, type TestApi } from "./test-api.ts";

const NOW = Date.parse("2026-01-01T12:00:07Z");
let api: TestApi;
let respond: (req: RecordedRequest) => [number, unknown];

before(async () => {
  api = await startTestApi((req, res) => {
    const [status, body] = respond(req);
    sendJson(res, status, body);
  });
});
after(() => api.close());

const run = (argv: string[]) => runCli(argv, { server: api.url, token: "tok", now: NOW });

test("an instant query prints one row per series", async () => {
  respond = () => [
    200,
    {
      status: "success",
      data: {
        resultType: "vector",
        result: [
          { metric: { route: "/a" }, value: [NOW / 1000, "0.3333333333"] },
          { metric: { __name__: "up", job: "api" }, value: [NOW / 1000, "1"] },
        ],
      },
    },
  ];
  const r = await run(["metrics", "sum by (route) (rate(x[5m]))"]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, 'SERIES          VALUE\n{route="/a"}    0.333333\nup{job="api"}   1\n');
  const q = new URL(api.requests.at(-1)?.url ?? "", api.url);
  assert.equal(q.pathname, "/api/v1/prom/api/v1/query");
  assert.equal(q.searchParams.get("query"), "sum by (route) (rate(x[5m]))");
  assert.equal(q.searchParams.get("time"), String(NOW / 1000));
});

test("a range query prints a time column and one column per series, labels they share left out", async () => {
  respond = () => [
    200,
    {
      status: "success",
      data: {
        resultType: "matrix",
        result: [
          {
            metric: { job: "api", route: "/a" },
            values: [
              [1767268800, "1"],
              [1767268830, "2"],
            ],
          },
          { metric: { job: "api", route: "/b" }, values: [[1767268830, "NaN"]] },
        ],
      },
    },
  ];
  const r = await run(["metrics", "x", "--range", "1m", "--step", "30s"]);
  assert.equal(r.code, 0, r.err);
  assert.equal(
    r.out,
    'TIME       {route="/a"}   {route="/b"}\n12:00:00   1              -\n12:00:30   2              NaN\n',
  );
  const q = new URL(api.requests.at(-1)?.url ?? "", api.url);
  assert.equal(q.pathname, "/api/v1/prom/api/v1/query_range");
  // The points end at now (12:00:07), a whole number of steps after the start.
  assert.equal(q.searchParams.get("start"), "1767268747");
  assert.equal(q.searchParams.get("end"), "1767268807");
  assert.equal(q.searchParams.get("step"), "30");
});

test("errors: a bad query shows the server's message; bad flags are usage errors", async () => {
  respond = () => [
    400,
    {
      status: "error",
      errorType: "bad_data",
      error: "parse error at position 5: x",
      code: "invalid",
      message: "parse error at position 5: x",
    },
  ];
  const bad = await run(["metrics", "sum("]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /parse error at position 5/);
  const usage = await run(["metrics", "x", "--range", "soon"]);
  assert.equal(usage.code, 2);
  assert.match(usage.err, /--range soon: give a duration/);
  assert.equal((await run(["metrics"])).code, 2);
});

test("--metrics-remote-write takes an http(s) URL and NAME=VALUE headers, and says which flag is wrong", async () => {
  const { remoteWriteOf } = await import("./platform.ts");
  assert.deepEqual(remoteWriteOf({}), {});
  assert.deepEqual(
    remoteWriteOf({
      "metrics-remote-write": "http://prometheus:9090/api/v1/write",
      "metrics-remote-write-header": ["Authorization=Bearer a=b"],
    }),
    { remoteWrite: { url: "http://prometheus:9090/api/v1/write", headers: { Authorization: "Bearer a=b" } } },
  );
  assert.throws(
    () => remoteWriteOf({ "metrics-remote-write": "prometheus:9090" }),
    /--metrics-remote-write must be an http\(s\) URL/,
  );
  assert.throws(
    () =>
      remoteWriteOf({
        "metrics-remote-write": "http://p/api/v1/write",
        "metrics-remote-write-header": ["x"],
      }),
    /--metrics-remote-write-header must be NAME=VALUE, got x/,
  );
  assert.throws(
    () => remoteWriteOf({ "metrics-remote-write-header": ["a=b"] }),
    /--metrics-remote-write-header needs --metrics-remote-write URL/,
  );
});
