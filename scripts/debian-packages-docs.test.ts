// Every Debian package the code installs (ensureDebianPackages) is named in
// docs/testing.md's table and in its purge command, so a new one cannot slip in
// unsaid; the README's list of what `npm test` installs names the same ones
// but for the benchmarks' own.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..");
/** Installed for the benchmarks only, which `npm test` does not run. */
const BENCH_ONLY = new Set(["nginx", "wrk", "nghttp2-client"]);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === "node_modules" ? [] : sources(p);
    return e.name.endsWith(".ts") ? [p] : [];
  });
}

/** The packages named in `ensureDebianPackages({ binary: "package", … })` calls, with a file that asks. */
function installed(): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of ["src", "test", "bench", "scripts"].flatMap((d) => sources(join(ROOT, d)))) {
    // Comments name calls as examples: only code counts.
    const text = readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => !/^\s*(\/\/|\/?\*)/.test(l))
      .join("\n");
    for (const call of text.matchAll(/ensureDebianPackages\(\s*\{([^}]*)\}/g))
      for (const m of (call[1] ?? "").matchAll(/:\s*"([a-z0-9][a-z0-9.+-]*)"/g))
        if (m[1]) out.set(m[1], relative(ROOT, file));
  }
  return out;
}

test("docs/testing.md and the README name every Debian package the code installs", () => {
  const packages = installed();
  assert.ok(packages.has("prometheus") && packages.has("etcd-server"), `found: ${[...packages.keys()]}`);
  const testing = readFileSync(join(ROOT, "docs/testing.md"), "utf8");
  const table = testing.split("\n").filter((l) => l.startsWith("| `"));
  const purge = /apt-get purge ([^`]+)`/.exec(testing)?.[1]?.split(" ") ?? [];
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const npmTest = readme.slice(readme.indexOf("`npm test` type-checks"), readme.indexOf("Many machines:"));
  for (const [name, file] of packages) {
    assert.ok(
      table.some((l) => l.split("|")[1]?.includes(`\`${name}\``)),
      `${name} (${file}) is not in docs/testing.md's table`,
    );
    assert.ok(
      npmTest.includes(`\`${name}\``),
      `${name} (${file}) is not in the README's list of what npm test installs`,
    );
    const usual = ["iproute2", "openssl", "util-linux", "git"].includes(name);
    if (!usual)
      assert.ok(purge.includes(name), `${name} (${file}) is not in docs/testing.md's purge command`);
  }
  for (const name of BENCH_ONLY)
    assert.ok(packages.has(name), `${name} is no longer installed: drop it here`);
});
