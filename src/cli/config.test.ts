import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { findDataDir, NO_SERVER_MESSAGE, resolveServerConfig } from "./config.ts";

describe("server config", () => {
  let root: string;
  let project: string;
  let home: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "herd-cli-config-"));
    project = join(root, "project");
    home = join(root, "home");
    await mkdir(join(project, ".herd"), { recursive: true });
    await mkdir(join(project, "sub", "deeper"), { recursive: true });
    await mkdir(home);
    await writeFile(
      join(project, ".herd", "server.json"),
      JSON.stringify({ url: "http://127.0.0.1:7070", gatewayUrl: "http://127.0.0.1:8080" }),
    );
    await writeFile(join(project, ".herd", "admin-token"), "secret\n");
  });
  after(() => rm(root, { recursive: true, force: true }));

  it("finds the nearest .herd in a parent directory", async () => {
    const cwd = join(project, "sub", "deeper");
    assert.equal(await findDataDir({ env: {}, cwd, home }), join(project, ".herd"));
    const config = await resolveServerConfig({ env: {}, cwd, home });
    assert.deepEqual(config, {
      url: "http://127.0.0.1:7070",
      token: "secret",
      gatewayUrl: "http://127.0.0.1:8080",
      source: join(project, ".herd", "server.json"),
    });
  });

  it("prefers flags, then the environment", async () => {
    const env = { HERD_SERVER: "http://env:1", HERD_TOKEN: "envtoken" };
    const fromEnv = await resolveServerConfig({ env, cwd: project, home });
    assert.equal(fromEnv.url, "http://env:1");
    assert.equal(fromEnv.token, "envtoken");
    assert.equal(fromEnv.gatewayUrl, undefined);
    const fromFlags = await resolveServerConfig({
      server: "http://flag:2/",
      token: "flagtoken",
      env,
      cwd: project,
      home,
    });
    assert.equal(fromFlags.url, "http://flag:2");
    assert.equal(fromFlags.token, "flagtoken");
  });

  it("uses HERD_DATA and falls back to ~/.herd", async () => {
    assert.equal(
      await findDataDir({ env: { HERD_DATA: join(project, ".herd") }, cwd: root, home }),
      join(project, ".herd"),
    );
    assert.equal(await findDataDir({ env: {}, cwd: home, home }), join(home, ".herd"));
  });

  it("says what to do when no server is known", async () => {
    await assert.rejects(resolveServerConfig({ env: {}, cwd: home, home }), { message: NO_SERVER_MESSAGE });
  });

  it("asks for a token for a server that is not the local one", async () => {
    await assert.rejects(
      resolveServerConfig({ server: "http://other:7070", env: {}, cwd: project, home }),
      /pass --token or HERD_TOKEN/,
    );
  });
});
