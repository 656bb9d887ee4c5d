// A preload for bench:footprint's `--probe DIR` (`--import` through NODE_OPTIONS):
// on SIGUSR2 the process writes DIR/<pid>.json with where its memory goes:
//   memory   process.memoryUsage() and V8's heap spaces (committed and used);
//   smaps    its mappings from /proc/self/smaps, RSS summed by kind (the node
//            binary, anonymous memory, the [heap] of malloc, other files);
//   modules  every script V8 holds (url and source length, from the inspector's
//            Debugger.scriptParsed), which is also the list of modules loaded;
//   and with FOOTPRINT_PROBE_HEAP=1 a heap snapshot, DIR/<pid>.heapsnapshot.
// Plain JavaScript: it loads before the hooks that load herd's TypeScript.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";
import { getHeapSpaceStatistics, writeHeapSnapshot } from "node:v8";

const dir = process.env.FOOTPRINT_PROBE_DIR;

/** RSS in bytes by kind of mapping. */
function smaps() {
  const out = {};
  let kind = "";
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const path = head[1];
      kind =
        path === process.execPath
          ? "node binary"
          : path === ""
            ? "anonymous"
            : path.startsWith("[")
              ? path
              : path.includes(".so")
                ? "shared libraries"
                : "other files";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[kind] = (out[kind] ?? 0) + Number(rss[1]) * 1024;
  }
  return out;
}

/** The scripts V8 holds: url and source length. */
function scripts() {
  const out = [];
  const session = new Session();
  session.connect();
  session.on("Debugger.scriptParsed", ({ params }) => {
    out.push({ url: params.url, length: params.length ?? 0 });
  });
  session.post("Debugger.enable");
  session.post("Debugger.disable");
  session.disconnect();
  return out;
}

if (dir) {
  process.on("SIGUSR2", () => {
    const memory = {
      ...process.memoryUsage(),
      spaces: Object.fromEntries(
        getHeapSpaceStatistics().map((s) => [
          s.space_name,
          { committed: s.physical_space_size, used: s.space_used_size },
        ]),
      ),
    };
    const mappings = smaps();
    mkdirSync(dir, { recursive: true });
    // FOOTPRINT_PROBE_HEAP=1: a heap snapshot too (DIR/<pid>.heapsnapshot; open it in Chrome's DevTools),
    // taken before the inspector's Debugger computes every script's line ends (about 2 MB of heap).
    if (process.env.FOOTPRINT_PROBE_HEAP === "1") writeHeapSnapshot(join(dir, `${process.pid}.heapsnapshot`));
    const report = { pid: process.pid, argv: process.argv, memory, smaps: mappings, modules: scripts() };
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify(report));
  });
}
