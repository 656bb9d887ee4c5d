// How herd.yaml mistakes reach a person through the CLI: one message with the
// file and line, nothing uploaded.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli, sendJson, startTestApi, type TestApi } from "./test-api.ts";

let api: TestApi;
let dir: string;

before(async () => {
  api = await startTestApi((_req, res) => sendJson(res, 500, { code: "internal", message: "not expected" }));
  dir = await mkdtemp(join(tmpdir(), "herd-cli-manifest-"));
});
after(async () => {
  await api.close();
  await rm(dir, { recursive: true, force: true });
});

async function deploy(yaml: string) {
  await writeFile(join(dir, "herd.yaml"), yaml);
  return runCli(["deploy", dir], { server: api.url, token: "t" });
}

test("herd deploy: an indentation mistake is one line naming the file and the line to fix", async () => {
  const r = await deploy(
    "app: hello\nservices:\n  web:\n    command: node s.js\n    port: 3000\n      instances: 2\n",
  );
  assert.equal(r.code, 1);
  assert.equal(
    r.err,
    'herd: herd.yaml:6: bad indentation: "instances: 2" is indented more than "port: 3000", which already has a value; start it in the same column as "port:"\n',
  );
  assert.equal(api.requests.length, 0);
});

test("herd deploy: memory: 128MB says which units there are", async () => {
  const r = await deploy(
    "app: hello\nservices:\n  web:\n    command: node s.js\n    resources:\n      memory: 128MB\n",
  );
  assert.equal(r.code, 1);
  assert.equal(r.err.split("\n").length, 2, r.err);
  assert.match(
    r.err,
    /^herd: herd\.yaml:6: services\.web\.resources\.memory: must be .*Ki, Mi, Gi .*"128MB": did you mean 128Mi/,
  );
  assert.equal(api.requests.length, 0);
});
