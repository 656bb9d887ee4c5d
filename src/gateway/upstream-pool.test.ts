// The upstream pool against raw TCP servers that answer with exact bytes:
// framing (Content-Length, chunked, until close, none), answers split at
// every byte, keep-alive reuse and its limits, request bodies, and every
// failure the exchange tells apart (refused, closed early, timeouts, a bad
// answer, a request that cannot be written).

import assert from "node:assert/strict";
import net from "node:net";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { startBlackhole } from "./testing.ts";
import {
  BAD_RESPONSE,
  CLOSED,
  CONNECT_TIMEOUT,
  HEADERS_TIMEOUT,
  INVALID_REQUEST,
  type UpstreamHandler,
  UpstreamPool,
  type UpstreamRequest,
} from "./upstream-pool.ts";

interface Outcome {
  status: number;
  statusText: string;
  headers: string[];
  body: string;
  error: string;
}

/** A raw server: `answer` gets each connection's bytes as they arrive and writes what it likes. */
async function rawServer(answer: (socket: net.Socket, received: string) => void) {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const received: string[] = [];
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    let seen = "";
    socket.on("data", (chunk) => {
      seen += chunk.toString("latin1");
      received.push(chunk.toString("latin1"));
      answer(socket, seen);
    });
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return connections;
    },
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function poolTo(port: number, connections = 8, connectTimeoutMs = 2000): UpstreamPool {
  return new UpstreamPool("127.0.0.1", port, { connections, connectTimeoutMs, keepAliveMs: 4000 });
}

function request(over: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return {
    path: "/",
    method: "GET",
    headers: ["Host", "app.test"],
    body: null,
    headersTimeout: 2000,
    bodyTimeout: 2000,
    ...over,
  };
}

function run(pool: UpstreamPool, req: UpstreamRequest): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { status: 0, statusText: "", headers: [], body: "", error: "" };
    const handler: UpstreamHandler = {
      onConnect() {},
      onHeaders(status, headers, _resume, statusText) {
        out.status = status;
        out.statusText = statusText;
        out.headers = headers;
        return true;
      },
      onData(chunk) {
        out.body += chunk.toString("latin1");
        return true;
      },
      onComplete: () => resolve(out),
      onError(err) {
        out.error = (err as NodeJS.ErrnoException).code ?? err.message;
        resolve(out);
      },
    };
    pool.dispatch(req, handler);
  });
}

/** Answers every request on a connection with `response`, written in pieces of `step` bytes. */
function answering(response: string, step = 0) {
  return (socket: net.Socket, seen: string) => {
    const requests = seen.split("\r\n\r\n").length - 1;
    const answered = (socket as net.Socket & { answered?: number }).answered ?? 0;
    if (requests <= answered) return;
    (socket as net.Socket & { answered?: number }).answered = requests;
    if (step === 0) socket.write(response, "latin1");
    else for (let i = 0; i < response.length; i += step) socket.write(response.slice(i, i + step), "latin1");
  };
}

test("a chunked answer split at every byte is decoded whole, its trailers dropped, and its connection reused", async (t) => {
  const response =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
  for (const step of [0, 1, 2, 3, 7]) {
    const server = await rawServer(answering(response, step));
    const pool = poolTo(server.port);
    t.after(() => Promise.all([pool.destroy(), server.close()]));
    for (let i = 0; i < 3; i++) {
      const out = await run(pool, request());
      assert.equal(out.error, "", `step ${step}`);
      assert.equal(out.status, 200);
      assert.equal(out.body, "hello, world", `step ${step}`);
      assert.deepEqual(out.headers, ["Transfer-Encoding", "chunked", "X-A", "1"]);
    }
    assert.equal(server.connections, 1, `step ${step}: three answers over one kept-alive connection`);
  }
});

test("Content-Length bodies across reads; HEAD, 204 and 304 have none; interim 1xx answers are skipped", async (t) => {
  const body = "x".repeat(100_000);
  const server = await rawServer((socket, seen) => {
    if (!seen.endsWith("\r\n\r\n")) return;
    const line = seen
      .slice(seen.lastIndexOf("\r\n\r\n", seen.length - 5) + 1)
      .trim()
      .split("\r\n")[0];
    if (line.startsWith("HEAD")) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    else if (line.includes("/204")) socket.write("HTTP/1.1 204\r\n\r\n");
    else if (line.includes("/304")) socket.write("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n");
    else if (line.includes("/early"))
      socket.write(
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
      );
    else {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
      setTimeout(() => socket.write(body.slice(10)), 20);
    }
  });
  const pool = poolTo(server.port, 1);
  t.after(() => Promise.all([pool.destroy(), server.close()]));
  const big = await run(pool, request());
  assert.equal(big.body.length, body.length);
  assert.equal((await run(pool, request({ method: "HEAD" }))).body, "");
  const noContent = await run(pool, request({ path: "/204" }));
  assert.deepEqual([noContent.status, noContent.statusText, noContent.body], [204, "", ""]);
  const notModified = await run(pool, request({ path: "/304" }));
  assert.deepEqual([notModified.status, notModified.body], [304, ""]);
  const early = await run(pool, request({ path: "/early" }));
  assert.deepEqual([early.status, early.statusText, early.body], [201, "Created", "ok"]);
  assert.equal(server.connections, 1, "every answer was framed right, so one connection served them all");
});

test("an answer without a length runs until close; Connection: close is honoured", async (t) => {
  const server = await rawServer((socket, seen) => {
    if (!seen.endsWith("\r\n\r\n")) return;
    if (seen.includes("/until-close")) socket.end("HTTP/1.0 200 OK\r\n\r\nall of it");
    else if (seen.includes("/then-close")) socket.end("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbye.");
    else if (seen.includes("/too-long")) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA");
    else socket.write("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
  });
  const pool = poolTo(server.port);
  t.after(() => Promise.all([pool.destroy(), server.close()]));
  assert.equal((await run(pool, request({ path: "/until-close" }))).body, "all of it");
  assert.equal((await run(pool, request())).body, "ok");
  assert.equal((await run(pool, request())).body, "ok");
  assert.equal(server.connections, 3, "no connection was reused");
  // An instance that closes a kept-alive connection after answering: the next request gets a new one.
  assert.equal((await run(pool, request({ path: "/then-close" }))).body, "bye.");
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal((await run(pool, request())).body, "ok");
  assert.equal(server.connections, 5);
  // An answer longer than its length: the extra bytes are not read as the next answer.
  assert.equal((await run(pool, request({ path: "/too-long" }))).body, "ok");
  assert.equal((await run(pool, request())).body, "ok");
  assert.equal(server.connections, 7);
});

test("request bodies: a held one with its length, a streamed one chunked, one with a length as it is", async (t) => {
  // Answered once each body is whole (an answer before the body ends closes the connection).
  const server = await rawServer((socket, seen) => {
    if (["abc", "0\r\n\r\n", "four"].some((end) => seen.endsWith(end)))
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  });
  const pool = poolTo(server.port, 1);
  t.after(() => Promise.all([pool.destroy(), server.close()]));
  await run(pool, request({ method: "POST", headers: ["content-length", "3"], body: Buffer.from("abc") }));
  const stream = new PassThrough();
  const streamed = run(pool, request({ method: "POST", headers: [], body: stream }));
  stream.write("hello ");
  setTimeout(() => stream.end("world"), 20);
  await streamed;
  const sized = new PassThrough();
  const sizedDone = run(pool, request({ method: "PUT", headers: ["Content-Length", "4"], body: sized }));
  sized.end("four");
  await sizedDone;
  const all = server.received.join("");
  assert.match(all, /^POST \/ HTTP\/1\.1\r\ncontent-length: 3\r\nhost: 127\.0\.0\.1:\d+\r\n\r\nabc/);
  assert.match(
    all,
    /POST \/ HTTP\/1\.1\r\nhost: [^\r]+\r\ntransfer-encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n/,
  );
  assert.match(all, /PUT \/ HTTP\/1\.1\r\nContent-Length: 4\r\nhost: [^\r]+\r\n\r\nfour$/);
  assert.equal(server.connections, 1);
});

test("a streamed body that keeps moving is not cut by the headers timeout; one that stalls is", async (t) => {
  const server = await rawServer((socket, seen) => {
    if (seen.endsWith("0\r\n\r\n")) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsent");
  });
  const pool = poolTo(server.port);
  t.after(() => Promise.all([pool.destroy(), server.close()]));
  const moving = new PassThrough();
  const upload = run(pool, request({ method: "POST", headers: [], body: moving, headersTimeout: 300 }));
  for (let i = 0; i < 8; i++) {
    moving.write("part");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  moving.end();
  const done = await upload;
  assert.deepEqual(
    [done.error, done.body],
    ["", "sent"],
    "800 ms of upload against a 300 ms headers timeout",
  );
  const stalled = new PassThrough();
  const cut = run(pool, request({ method: "POST", headers: [], body: stalled, headersTimeout: 300 }));
  stalled.write("part");
  assert.equal((await cut).error, HEADERS_TIMEOUT);
  stalled.destroy();
});

test("a full pool queues requests in order; close lets them finish", async (t) => {
  const server = await rawServer(answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  const pool = poolTo(server.port, 2);
  t.after(() => server.close());
  const answers = await Promise.all(Array.from({ length: 10 }, () => run(pool, request())));
  assert.deepEqual(
    answers.map((a) => a.body),
    Array(10).fill("ok"),
  );
  assert.equal(server.connections, 2, "ten requests over the pool's two connections");
  const late = run(pool, request());
  await pool.close();
  assert.equal((await late).body, "ok", "a request taken before close is answered");
  assert.equal(pool.closed, true);
  assert.equal((await run(pool, request())).error, "UPSTREAM_POOL_CLOSED");
});

test("failures: refused, closed before the answer, timeouts, bad answers, a request that cannot be written", async (t) => {
  const free = await rawServer(() => {});
  const freePort = free.port;
  await free.close();
  assert.equal((await run(poolTo(freePort), request())).error, "ECONNREFUSED");

  const server = await rawServer((socket, seen) => {
    if (!seen.endsWith("\r\n\r\n")) return;
    if (seen.includes("/hang-up")) socket.destroy();
    else if (seen.includes("/half")) socket.end("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    else if (seen.includes("/garbage")) socket.write("SMTP ready\r\n\r\n");
    else if (seen.includes("/two-lengths"))
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok");
    else if (seen.includes("/stall")) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    else if (seen.includes("/no-colon")) socket.write("HTTP/1.1 200 OK\r\nX-A\r\nX-B: b:c\r\n\r\n");
    else if (seen.includes("/no-name")) socket.write("HTTP/1.1 200 OK\r\n: b\r\n\r\n");
    // After the others: its connection is kept, and what it saw stays in `seen`.
    else if (seen.includes("/blanks"))
      socket.write("HTTP/1.1 200 OK\r\nX-A: \t a b \t\r\nX-B:\r\nContent-Length:  2 \r\n\r\nok");
    // "/silent": no answer
  });
  const pool = poolTo(server.port);
  t.after(() => Promise.all([pool.destroy(), server.close()]));
  assert.equal((await run(pool, request({ path: "/hang-up" }))).error, CLOSED);
  const half = await run(pool, request({ path: "/half" }));
  assert.deepEqual([half.status, half.body, half.error], [200, "half", CLOSED]);
  assert.equal((await run(pool, request({ path: "/garbage" }))).error, BAD_RESPONSE);
  assert.equal((await run(pool, request({ path: "/two-lengths" }))).error, BAD_RESPONSE);
  // Header values lose the spaces and tabs around them (and only those); a line without a name is refused.
  const blanks = await run(pool, request({ path: "/blanks" }));
  assert.deepEqual([blanks.headers, blanks.body], [["X-A", "a b", "X-B", "", "Content-Length", "2"], "ok"]);
  assert.equal((await run(pool, request({ path: "/no-colon" }))).error, BAD_RESPONSE);
  assert.equal((await run(pool, request({ path: "/no-name" }))).error, BAD_RESPONSE);
  let started = Date.now();
  assert.equal((await run(pool, request({ path: "/silent", headersTimeout: 200 }))).error, HEADERS_TIMEOUT);
  assert.ok(Date.now() - started < 1500, "the headers timeout is close to its 200 ms");
  started = Date.now();
  const stalled = await run(pool, request({ path: "/stall", bodyTimeout: 200 }));
  assert.deepEqual([stalled.body, stalled.error], ["abc", "UPSTREAM_BODY_TIMEOUT"]);
  assert.equal((await run(pool, request({ path: "http://elsewhere/" }))).error, INVALID_REQUEST);
  assert.equal((await run(pool, request({ path: "/a b" }))).error, INVALID_REQUEST);

  const hole = await startBlackhole();
  t.after(() => hole.close());
  started = Date.now();
  assert.equal((await run(poolTo(hole.port, 8, 200), request())).error, CONNECT_TIMEOUT);
  assert.ok(Date.now() - started < 1500, "the connect timeout is close to its 200 ms");
});

test("abort ends the request and closes its connection; a reading paused by the handler resumes", async (t) => {
  const body = "y".repeat(1_000_000);
  const server = await rawServer((socket, seen) => {
    if (!seen.endsWith("\r\n\r\n")) return;
    if (seen.includes("/slow")) return;
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  });
  const pool = poolTo(server.port);
  t.after(() => Promise.all([pool.destroy(), server.close()]));
  const aborted = await new Promise<string>((resolve) => {
    pool.dispatch(request({ path: "/slow" }), {
      onConnect(abort) {
        setTimeout(() => abort(Object.assign(new Error("stop"), { code: "STOPPED" })), 50);
      },
      onHeaders: () => true,
      onData: () => true,
      onComplete: () => resolve("complete"),
      onError: (err) => resolve((err as NodeJS.ErrnoException).code ?? ""),
    });
  });
  assert.equal(aborted, "STOPPED");
  let bytes = 0;
  let pauses = 0;
  await new Promise<void>((resolve, reject) => {
    let resume: () => void = () => {};
    pool.dispatch(request(), {
      onConnect() {},
      onHeaders(_s, _h, r) {
        resume = r;
        return true;
      },
      onData(chunk) {
        bytes += chunk.length;
        pauses++;
        setTimeout(resume, 1);
        return false;
      },
      onComplete: () => resolve(),
      onError: reject,
    });
  });
  assert.equal(bytes, body.length);
  assert.ok(pauses > 1);
});
