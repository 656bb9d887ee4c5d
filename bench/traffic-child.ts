// The measured client of a bench, in a process of its own so it does not queue for a core
// behind the load the bench makes on the same machine (on a real network the client is
// elsewhere): started by `pacedTraffic` (bench/harness.ts), under SCHED_RR where the bench may.
//
// Open loop, as independent users are: requests arrive at `rate` a second with exponential gaps
// (a Poisson process) whatever the answers do, over at most `connections` keep-alive
// connections (a request finding all busy waits for one), and each latency counts from when its
// request was due, so a wait in this client counts too (no coordinated omission). A closed loop
// paced per connection (each connection's next request due a fixed gap after its last) was what
// this bench used before: after one stall its connections stayed bunched together, so a
// single-threaded app met them as one burst every gap for good, and the p99 was the burst's
// length (24 × 4 ms) however much CPU the app had.
//
// Its options are argv[2] (JSON); a line `rate N` on its stdin changes the rate from then on (the
// same process, its connections and compiled code, so a step in the load is not also a cold
// client). It writes each answer to stdout as it comes, one JSON line [sentAt (Date.now() when
// due), ms, outcome | null], and exits once its stdin closes (or after `seconds`) and every
// request sent has its answer.

import http from "node:http";

const o = JSON.parse(process.argv[2]) as {
  url: string;
  host: string;
  connections: number;
  rate: number;
  seconds: number;
};
const u = new URL(o.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections });
const clockSkew = Date.now() - performance.now();
const until = performance.now() + o.seconds * 1000;
let rate = o.rate;
let due = performance.now();
let stopped = false;
let timer: NodeJS.Timeout | undefined;
let pending = 0;

function send(at: number): void {
  pending++;
  let settled = false;
  const done = (outcome: string | null) => {
    if (settled) return;
    settled = true;
    process.stdout.write(
      `${JSON.stringify([Math.round(at + clockSkew), performance.now() - at, outcome])}\n`,
    );
    if (--pending === 0 && stopped) finish();
  };
  const req = http.request(
    { host: u.hostname, port: u.port, path: "/", headers: { host: o.host }, agent, timeout: 10_000 },
    (res) => {
      res.resume();
      res.on("end", () => done(res.statusCode === 200 ? null : String(res.statusCode)));
      res.on("error", (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    },
  );
  req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "timeout" })));
  req.on("error", (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  req.end();
}

/** Sends every request due by now, then sleeps until the next one is. */
function tick(): void {
  const now = performance.now();
  while (!stopped && due <= now) {
    send(due);
    due += (-Math.log(1 - Math.random()) * 1000) / rate;
  }
  if (now >= until) stop();
  if (!stopped) timer = setTimeout(tick, Math.max(0, due - performance.now()));
}

function stop(): void {
  if (stopped) return;
  stopped = true;
  clearTimeout(timer);
  if (pending === 0) finish();
}

function finish(): void {
  agent.destroy();
}

/** A new rate from now: the next request is due an exponential gap at that rate from now. */
function setRate(next: number): void {
  rate = next;
  clearTimeout(timer);
  due = performance.now() + (-Math.log(1 - Math.random()) * 1000) / rate;
  tick();
}

let input = "";
process.stdin.setEncoding("utf8").on("data", (chunk: string) => {
  input += chunk;
  for (let nl = input.indexOf("\n"); nl >= 0; nl = input.indexOf("\n")) {
    const m = /^rate (\d+(?:\.\d+)?)$/.exec(input.slice(0, nl).trim());
    input = input.slice(nl + 1);
    if (m && !stopped) setRate(Number(m[1]));
  }
});
process.stdin.on("end", stop);
tick();
