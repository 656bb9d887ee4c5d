import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  findDataDir,
  loginServerUrl,
  NO_SERVER_MESSAGE,
  readUserConfig,
  removeUserConfig,
  resolveServerConfig,
  saveLocalContext,
  userConfigPath,
  writeUserConfig,
} from "./config.ts";

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
      tokenSource: join(project, ".herd", "admin-token"),
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

  it("keeps the login config at XDG_CONFIG_HOME or ~/.config, private to its owner", async () => {
    assert.equal(userConfigPath({ env: {}, home }), join(home, ".config", "herd", "config.json"));
    assert.equal(
      userConfigPath({ env: { XDG_CONFIG_HOME: join(root, "xdg") }, home }),
      join(root, "xdg", "herd", "config.json"),
    );
    // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
    assert.equal(
      userConfigPath({ env: { XDG_CONFIG_HOME: "rel" }, home }),
      join(home, ".config", "herd", "config.json"),
    );
    const file = join(root, "private", "herd", "config.json");
    await mkdir(join(root, "private", "herd"), { recursive: true, mode: 0o755 });
    const one = { current: "a", contexts: { a: { server: "http://a:1", token: "t1", tenant: "shop" } } };
    await writeUserConfig(file, one);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(root, "private", "herd"))).mode & 0o777, 0o700);
    assert.deepEqual(await readUserConfig(file), one);
    assert.deepEqual(JSON.parse(await readFile(file, "utf8")).contexts.a.token, "t1");
    assert.equal(await removeUserConfig(file), true);
    assert.equal(await removeUserConfig(file), false);
    assert.equal(await readUserConfig(file), undefined);
    await writeFile(file, "{nope");
    await assert.rejects(readUserConfig(file), /config\.json: not valid JSON.*herd login/);
    await writeFile(file, "{}");
    await assert.rejects(readUserConfig(file), /the login needs "server" \(an http\(s\) URL\) and "token"/);
    await writeFile(file, JSON.stringify({ contexts: { prod: { server: "http://p" } } }));
    await assert.rejects(
      readUserConfig(file),
      /context prod needs "server" \(an http\(s\) URL\) and "token"; herd context delete prod/,
    );
    // A config left without contexts is removed, not written empty.
    await writeUserConfig(file, { contexts: {} });
    await assert.rejects(stat(file), { code: "ENOENT" });
  });

  it("resolves flags > env > login config > data dir, each of server, token and tenant", async () => {
    const xdg = join(root, "order");
    const env = { XDG_CONFIG_HOME: xdg };
    await writeUserConfig(join(xdg, "herd", "config.json"), {
      current: "login",
      contexts: { login: { server: "http://login:3", token: "logintoken", tenant: "shop" } },
    });
    // The login config beats the data dir of the current directory.
    const login = await resolveServerConfig({ env, cwd: project, home });
    assert.equal(login.url, "http://login:3");
    assert.equal(login.token, "logintoken");
    assert.equal(login.tenant, "shop");
    assert.equal(login.tokenSource, `context login in ${join(xdg, "herd", "config.json")}`);
    assert.equal(login.context, "login");
    assert.equal(login.gatewayUrl, undefined);
    // The environment beats it, one setting at a time.
    const envToken = await resolveServerConfig({
      env: { ...env, HERD_TOKEN: "envtoken" },
      cwd: project,
      home,
    });
    assert.equal(envToken.url, "http://login:3");
    assert.equal(envToken.token, "envtoken");
    assert.equal(envToken.tokenSource, "HERD_TOKEN");
    const envTenant = await resolveServerConfig({
      env: { ...env, HERD_TENANT: "other" },
      cwd: project,
      home,
    });
    assert.equal(envTenant.tenant, "other");
    // Flags beat the environment.
    const flags = await resolveServerConfig({
      tenant: "flagged",
      token: "flagtoken",
      env: { ...env, HERD_TENANT: "other", HERD_TOKEN: "envtoken" },
      cwd: project,
      home,
    });
    assert.deepEqual([flags.token, flags.tenant, flags.tokenSource], ["flagtoken", "flagged", "--token"]);
    // Another server: neither the login's token nor its tenant go with it; the data dir's server
    // gets the data dir's token.
    const local = await resolveServerConfig({ server: "http://127.0.0.1:7070", env, cwd: project, home });
    assert.equal(local.token, "secret");
    assert.equal(local.tenant, undefined);
    assert.equal(local.gatewayUrl, "http://127.0.0.1:8080");
    await assert.rejects(
      resolveServerConfig({ server: "http://third:4", env, cwd: project, home }),
      /no token for the herd server at http:\/\/third:4: sign in with `herd login --server http:\/\/third:4`/,
    );
    // An https server's CA: HERD_CA, else the login's for its own server, else the data dir's.
    const tlsXdg = join(root, "tls-login");
    await writeUserConfig(join(tlsXdg, "herd", "config.json"), {
      current: "tls",
      contexts: { tls: { server: "https://login:3", token: "t", ca: "/etc/herd/ca.pem" } },
    });
    const tlsEnv = { XDG_CONFIG_HOME: tlsXdg };
    assert.equal((await resolveServerConfig({ env: tlsEnv, cwd: project, home })).ca, "/etc/herd/ca.pem");
    assert.equal(
      (await resolveServerConfig({ env: { ...tlsEnv, HERD_CA: "my-ca.pem" }, cwd: project, home })).ca,
      join(project, "my-ca.pem"),
    );
    assert.equal(
      (await resolveServerConfig({ server: "https://else:4", token: "x", env: tlsEnv, cwd: project, home }))
        .ca,
      undefined,
    );
    // herd login signs in again to the last server unless told otherwise.
    assert.equal(await loginServerUrl({ env, cwd: project, home }), "http://login:3");
    assert.equal(await loginServerUrl({ env: {}, cwd: project, home }), "http://127.0.0.1:7070");
    assert.equal(await loginServerUrl({ server: "http://x:9/", env, cwd: project, home }), "http://x:9");
    assert.equal(await loginServerUrl({ env: {}, cwd: home, home }), undefined);
  });

  it("reads the single login of older herds as one current context named after its server", async () => {
    const xdg = join(root, "old");
    const file = join(xdg, "herd", "config.json");
    await mkdir(dirname(file), { recursive: true });
    await writeFile(
      file,
      JSON.stringify({ server: "https://herd.example.com", token: "old", tenant: "shop" }),
    );
    assert.deepEqual(await readUserConfig(file), {
      current: "herd.example.com",
      contexts: { "herd.example.com": { server: "https://herd.example.com", token: "old", tenant: "shop" } },
    });
    const config = await resolveServerConfig({ env: { XDG_CONFIG_HOME: xdg }, cwd: home, home });
    assert.deepEqual(
      [config.url, config.token, config.tenant, config.context],
      ["https://herd.example.com", "old", "shop", "herd.example.com"],
    );
  });

  it("uses --context, else HERD_CONTEXT, else the current context; an unknown one names the others", async () => {
    const xdg = join(root, "several");
    await writeUserConfig(join(xdg, "herd", "config.json"), {
      current: "prod",
      contexts: {
        prod: { server: "https://prod:1", token: "p" },
        staging: { server: "https://staging:1", token: "s", tenant: "qa" },
      },
    });
    const env = { XDG_CONFIG_HOME: xdg };
    assert.equal((await resolveServerConfig({ env, cwd: home, home })).token, "p");
    const staging = await resolveServerConfig({ env: { ...env, HERD_CONTEXT: "staging" }, cwd: home, home });
    assert.deepEqual([staging.url, staging.token, staging.tenant], ["https://staging:1", "s", "qa"]);
    const flag = await resolveServerConfig({
      context: "prod",
      env: { ...env, HERD_CONTEXT: "staging" },
      cwd: home,
      home,
    });
    assert.equal(flag.token, "p");
    await assert.rejects(resolveServerConfig({ context: "nope", env, cwd: home, home }), {
      message: "no context nope; the contexts are: prod, staging",
    });
    await assert.rejects(
      resolveServerConfig({ context: "nope", env: {}, cwd: home, home }),
      /no context nope: none is saved yet/,
    );
    // --ca beats HERD_CA; both are resolved from the current directory.
    const ca = await resolveServerConfig({ ca: "a.pem", env: { ...env, HERD_CA: "b.pem" }, cwd: home, home });
    assert.deepEqual([ca.ca, ca.caSource], [join(home, "a.pem"), "--ca"]);
  });

  it("herd up saves the context local and makes it current only when no other context is", async () => {
    const file = join(root, "up", "herd", "config.json");
    const up = { server: "http://127.0.0.1:7070", token: "admin1", dataDir: "/src/app/.herd" };
    // Nothing saved yet: local, current.
    assert.deepEqual(await saveLocalContext(file, up), { name: "local", current: true });
    assert.deepEqual(await readUserConfig(file), {
      current: "local",
      contexts: { local: { ...up, server: up.server, user: "user admin" } },
    });
    // Started again (a new token, --tls now): updated, still current.
    const again = { ...up, token: "admin2", ca: "/src/app/.herd/tls/ca-cert.pem" };
    assert.deepEqual(await saveLocalContext(file, again), { name: "local", current: true });
    assert.equal((await readUserConfig(file))?.contexts.local.ca, again.ca);
    // The user chose another context: local is saved, the choice stays.
    const config = (await readUserConfig(file)) ?? { contexts: {} };
    config.contexts.prod = { server: "https://prod:1", token: "p" };
    config.current = "prod";
    await writeUserConfig(file, config);
    assert.deepEqual(await saveLocalContext(file, { ...up, token: "admin3" }), {
      name: "local",
      current: false,
      other: "prod",
    });
    const after3 = await readUserConfig(file);
    assert.deepEqual([after3?.current, after3?.contexts.local.token], ["prod", "admin3"]);
    // A context named local that herd login saved is the user's: left alone.
    await writeUserConfig(file, {
      current: "local",
      contexts: { local: { server: "http://127.0.0.1:7070", token: "alice", user: "user alice" } },
    });
    const skipped = await saveLocalContext(file, up);
    assert.equal(skipped.name, undefined);
    assert.match(skipped.skipped ?? "", /the context local is one you saved with herd login/);
    assert.equal((await readUserConfig(file))?.contexts.local.token, "alice");
  });
});
