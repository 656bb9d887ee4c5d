// The API over TLS: a CA made once in the data dir signs the server's
// certificate; clients that trust the CA get in, a client without it fails the
// handshake; an agent joins over it and keeps its credential.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { agentToken, credentialFile } from "../agent/join.ts";
import { ApiClient } from "../cli/api-client.ts";
import { caDispatcher, trusting } from "../common/api-ca.ts";
import { silentLogger } from "../common/log.ts";
import { type RunningServer, startServer } from "../daemons/control-plane.ts";
import { ensureApiTls } from "./tls.ts";

let server: RunningServer;
let ca = "";
const dir = mkdtempSync(join(tmpdir(), "herd-api-tls-"));

before(async () => {
  server = await startServer({ dataDir: join(dir, "server"), port: 0, logger: silentLogger, tls: true });
  assert.ok(server.caFile);
  ca = readFileSync(server.caFile, "utf8");
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the API serves https with a certificate its data dir's CA signed; the CA key is private", async () => {
  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(server.caFile, join(dir, "server", "tls", "ca-cert.pem"));
  assert.equal(statSync(join(dir, "server", "tls", "ca-key.pem")).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, "server", "tls", "api-key.pem")).mode & 0o777, 0o600);
  const client = new ApiClient({ url: server.url, token: server.adminToken, ca });
  const who = await client.get<{ admin: boolean }>("/whoami");
  assert.equal(who.admin, true);
  // localhost is on the certificate too.
  const local = server.url.replace("127.0.0.1", "localhost");
  const res = await fetch(`${local}/healthz`, trusting(caDispatcher(ca)));
  assert.equal(res.status, 200);
});

test("a client without the CA fails the handshake", async () => {
  // Another process: this one trusts the CA it serves with (its own /metrics scrape).
  const script = `fetch(${JSON.stringify(`${server.url}/healthz`)}).then(() => process.exit(0), (e) => { console.log(e.cause?.code ?? e.message); process.exit(3); })`;
  const run = promisify(execFile)(process.execPath, ["-e", script]);
  await assert.rejects(run, (err: { code?: number; stdout?: string }) => {
    assert.equal(err.code, 3);
    assert.match(err.stdout ?? "", /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|unable to verify/i);
    return true;
  });
  // A client that trusts another CA fails too.
  const another = (await ensureApiTls(join(dir, "other-tls"), "127.0.0.1")).ca;
  const other = new ApiClient({ url: server.url, token: server.adminToken, ca: another });
  await assert.rejects(other.get("/whoami"), /cannot reach the herd server/);
});

test("an agent joins over https with the CA and keeps its credential", async () => {
  const made = await new ApiClient({ url: server.url, token: server.adminToken, ca }).post<{ token: string }>(
    "/tokens",
    { name: "join", kind: "join", expiresIn: "10m", uses: 1 },
  );
  const agentDir = join(dir, "agent");
  const sources = {
    server: server.url,
    name: "tls-node",
    dataDir: agentDir,
    joinToken: made.token,
    ca,
  };
  // The CA given is the one trusted (this process also trusts the server's, for its own scrape).
  const another = (await ensureApiTls(join(dir, "other-tls"), "127.0.0.1")).ca;
  await assert.rejects(
    agentToken({ ...sources, dataDir: join(dir, "wrong-ca"), ca: another }),
    /cannot join .*: certificate signature failure/,
  );
  const token = await agentToken(sources);
  assert.match(token, /^herd_agt_/);
  assert.equal(statSync(credentialFile(agentDir)).mode & 0o777, 0o600);
  // A restart reads the file: the join token (now used up) is not needed again.
  assert.equal(await agentToken(sources), token);
  await assert.rejects(
    agentToken({ ...sources, name: "other-name" }),
    /holds the credential of node tls-node/,
  );
  // Neither a credential nor a join token: the error says what to pass.
  await assert.rejects(
    agentToken({ ...sources, dataDir: join(dir, "empty"), joinToken: undefined }),
    /pass --join-token/,
  );
  // HERD_TOKEN does not override the kept credential, nor a join token.
  assert.equal(await agentToken({ ...sources, envToken: "from-the-shell" }), token);
  await assert.rejects(
    agentToken({ ...sources, name: "second", dataDir: join(dir, "second"), envToken: "from-the-shell" }),
    /used up/,
  );
  // The join token is used up: a second node cannot join with it.
  await assert.rejects(
    agentToken({ ...sources, name: "second", dataDir: join(dir, "second") }),
    /refused \(401\): join token .* used up/,
  );
});

test("a restart keeps the CA and the certificate", async () => {
  const again = await startServer({ dataDir: join(dir, "again"), port: 0, logger: silentLogger, tls: true });
  const first = readFileSync(join(dir, "again", "tls", "ca-cert.pem"), "utf8");
  const cert = readFileSync(join(dir, "again", "tls", "api-cert.pem"), "utf8");
  await again.close();
  const third = await startServer({ dataDir: join(dir, "again"), port: 0, logger: silentLogger, tls: true });
  try {
    assert.equal(readFileSync(join(dir, "again", "tls", "ca-cert.pem"), "utf8"), first);
    assert.equal(readFileSync(join(dir, "again", "tls", "api-cert.pem"), "utf8"), cert);
  } finally {
    await third.close();
  }
});
