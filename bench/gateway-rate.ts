// A fixed-rate (open-loop) HTTP load generator, used by bench/gateway.ts for
// the latency target because Debian has no wrk2. Requests are scheduled evenly
// over time at RATE per second in total, sent over node:http keep-alive agents,
// and each latency is measured from the request's *scheduled* send time, so a
// slow target cannot hide its slowness by delaying the next requests
// (coordinated omission).
//
//   node bench/gateway-rate.ts URL RATE SECONDS [HOST] [CONNECTIONS] [WARMUP_SECONDS]
//
// Prints one JSON line (RateResult). `reached` is false when the generator
// itself fell behind its schedule (its send loop late, or too few requests
// sent): then its latencies say more about the generator than the target.

import http from "node:http";

export interface RateResult {
  url: string;
  /** Asked rate, req/s. */
  rate: number;
  /** Requests scheduled in the measured window. */
  scheduled: number;
  /** Of those, answered (any status). */
  completed: number;
  /** Answered with a status outside 2xx. */
  non2xx: number;
  /** Socket errors and requests still unanswered at the end. */
  errors: number;
  /** Completed requests per second of the measured window. */
  achieved: number;
  /** Latency from scheduled send time to the end of the response, ms. */
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** How late the generator's loop issued requests, ms (p99): its own lag. */
  sendLagP99: number;
  reached: boolean;
  /** Why `reached` is false. */
  why?: string;
}

/** The q-quantile of sorted `xs` (nearest rank). */
function quantile(xs: Float64Array, q: number): number {
  if (xs.length === 0) return Number.NaN;
  return xs[Math.min(xs.length - 1, Math.max(0, Math.ceil(q * xs.length) - 1))];
}

export async function runAtRate(options: {
  url: string;
  rate: number;
  seconds: number;
  host?: string;
  connections?: number;
  warmupSeconds?: number;
}): Promise<RateResult> {
  const { rate, seconds } = options;
  const warmup = options.warmupSeconds ?? 1;
  const connections = options.connections ?? 64;
  const url = new URL(options.url);
  const agent = new http.Agent({
    keepAlive: true,
    maxSockets: connections,
    maxFreeSockets: connections,
    scheduling: "fifo",
  });
  const requestOptions: http.RequestOptions = {
    agent,
    host: url.hostname,
    port: Number(url.port),
    path: url.pathname + url.search,
    headers: options.host ? { host: options.host } : {},
  };

  const total = Math.round(rate * (warmup + seconds));
  const firstMeasured = Math.round(rate * warmup);
  const measured = total - firstMeasured;
  const latencies = new Float64Array(measured);
  const lags = new Float64Array(measured);
  let completed = 0;
  let non2xx = 0;
  let errors = 0;
  let outstanding = 0;
  const interval = 1000 / rate;

  let done: () => void = () => {};
  const allDone = new Promise<void>((resolve) => {
    done = resolve;
  });
  let next = 0;
  let scheduleOver = false;

  const finish = (index: number, scheduledAt: number, status: number) => {
    outstanding--;
    if (index >= firstMeasured) {
      latencies[completed] = performance.now() - scheduledAt;
      completed++;
      if (status < 200 || status > 299) non2xx++;
    }
    if (scheduleOver && outstanding === 0) done();
  };

  const send = (index: number, scheduledAt: number) => {
    outstanding++;
    if (index >= firstMeasured) lags[index - firstMeasured] = performance.now() - scheduledAt;
    const req = http.request(requestOptions, (res) => {
      res.on("data", () => {});
      res.on("end", () => finish(index, scheduledAt, res.statusCode ?? 0));
    });
    req.on("error", () => {
      if (index >= firstMeasured) errors++;
      outstanding--;
      if (scheduleOver && outstanding === 0) done();
    });
    req.end();
  };

  const start = performance.now() + 5;
  const measureStart = start + firstMeasured * interval;
  await new Promise<void>((resolve) => {
    // Every millisecond (the timer's resolution), send every request whose time has come.
    const tick = () => {
      const now = performance.now();
      while (next < total && start + next * interval <= now) {
        send(next, start + next * interval);
        next++;
      }
      if (next >= total) {
        scheduleOver = true;
        resolve();
        return;
      }
      const wait = start + next * interval - performance.now();
      if (wait > 1.5) setTimeout(tick, wait - 1);
      else setImmediate(tick);
    };
    setTimeout(tick, 5);
  });
  const scheduleEnd = start + total * interval;
  if (outstanding > 0) {
    await Promise.race([allDone, new Promise((resolve) => setTimeout(resolve, 5000))]);
  }
  const unanswered = measured - completed - errors;
  errors += Math.max(0, unanswered);
  agent.destroy();

  const lat = latencies.subarray(0, completed).sort();
  const lagSorted = lags.sort();
  const windowSeconds = (scheduleEnd - measureStart) / 1000;
  const achieved = completed / windowSeconds;
  const sendLagP99 = quantile(lagSorted, 0.99);
  let why: string | undefined;
  if (sendLagP99 > 2) {
    why = `the generator's send loop ran late (p99 ${sendLagP99.toFixed(2)} ms behind schedule)`;
  } else if (completed + errors < measured * 0.99) {
    why = `only ${completed + errors} of ${measured} requests were sent`;
  }
  return {
    url: options.url,
    rate,
    scheduled: measured,
    completed,
    non2xx,
    errors,
    achieved,
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    p999: quantile(lat, 0.999),
    max: lat.length ? lat[lat.length - 1] : Number.NaN,
    sendLagP99,
    reached: why === undefined,
    why,
  };
}

if (import.meta.main) {
  const [url, rate, seconds, host, connections, warmup] = process.argv.slice(2);
  if (!url || !rate || !seconds) {
    console.error("usage: node bench/gateway-rate.ts URL RATE SECONDS [HOST] [CONNECTIONS] [WARMUP_SECONDS]");
    process.exit(2);
  }
  const result = await runAtRate({
    url,
    rate: Number(rate),
    seconds: Number(seconds),
    host: host || undefined,
    connections: connections ? Number(connections) : undefined,
    warmupSeconds: warmup ? Number(warmup) : undefined,
  });
  console.log(JSON.stringify(result));
}
