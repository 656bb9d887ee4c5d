// Summarises the reports bench:footprint's `--probe DIR` wrote (bench/footprint-probe.mjs):
// per process, its memory by kind and the modules it loaded grouped by package
// (herd's own by src/ folder), largest first.
//
// Usage: node bench/footprint-report.ts DIR [--files N]   (N: also list herd's N largest files)

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

interface Report {
  pid: number;
  argv: string[];
  memory: NodeJS.MemoryUsage & { spaces: Record<string, { committed: number; used: number }> };
  smaps: Record<string, number>;
  modules: { url: string; length: number }[];
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { files: { type: "string", default: "0" } },
});
// A reader that stops early (`| head`) ends the report quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => process.exit(err.code === "EPIPE" ? 0 : 1));
const out = (text: string) => process.stdout.write(text);
const MB = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
const KB = (n: number) => `${(n / 1024).toFixed(0)} KB`;

/** The group a module's URL belongs to: node's own, a package, or herd's src/ folder. */
function groupOf(url: string): string {
  if (url.startsWith("node:")) return "node (built-in)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const src = /\/src\/([^/]+)\//.exec(url);
  if (src) return `herd src/${src[1]}`;
  return url === "" ? "(no url: eval, wasm, internal)" : url.replace(/^file:\/\//, "");
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : name.endsWith(".json") ? [path] : [];
  });
}

for (const file of files(positionals[0] ?? ".")) {
  const r = JSON.parse(readFileSync(file, "utf8")) as Report;
  const m = r.memory;
  out(`\n${file}: pid ${r.pid} ${r.argv.slice(1, 3).join(" ")}\n`);
  out(
    `  rss ${MB(m.rss)}  heap ${MB(m.heapUsed)} used of ${MB(m.heapTotal)}  external ${MB(m.external)}  arrayBuffers ${MB(m.arrayBuffers)}\n`,
  );
  out(
    `  spaces: ${Object.entries(m.spaces)
      .filter(([, s]) => s.committed > 0)
      .map(([name, s]) => `${name} ${MB(s.used)}/${MB(s.committed)}`)
      .join(", ")}\n`,
  );
  out(
    `  rss by mapping: ${Object.entries(r.smaps)
      .sort((a, b) => b[1] - a[1])
      .map(([kind, n]) => `${kind} ${MB(n)}`)
      .join(", ")}\n`,
  );
  const groups = new Map<string, { count: number; length: number }>();
  for (const mod of r.modules) {
    const g = groups.get(groupOf(mod.url)) ?? { count: 0, length: 0 };
    g.count++;
    g.length += mod.length;
    groups.set(groupOf(mod.url), g);
  }
  const total = r.modules.reduce((s, mod) => s + mod.length, 0);
  out(`  ${r.modules.length} scripts, ${KB(total)} of source:\n`);
  for (const [name, g] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
    out(`    ${KB(g.length).padStart(8)} ${String(g.count).padStart(4)}  ${name}\n`);
  }
  const n = Number(values.files);
  if (n > 0) {
    out(`  herd's ${n} largest files:\n`);
    for (const mod of r.modules
      .filter((x) => x.url.includes("/src/"))
      .sort((a, b) => b.length - a.length)
      .slice(0, n)) {
      out(`    ${KB(mod.length).padStart(8)}  ${mod.url.replace(/^.*\/src\//, "src/")}\n`);
    }
  }
}
