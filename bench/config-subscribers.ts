// The subscribers of bench:config, in a process of their own (the parent runs
// several, as real instances are processes of their own, not one event loop):
// a slice of the simulated instances, each on its own loopback connection to
// the feed, with a small HTTP/1.1 client on node:net (a request written, the
// response head and a Content-Length or chunked body read, the JSON parsed),
// the work a subscriber must do and no more, so that the client's own cost
// is not what the bench measures. Its CPU is reported apart all the same.
//
// Modes: push — even indexes long-poll with a version cursor, odd ones follow
// an SSE stream (reconnecting with Last-Event-ID); polling — a plain GET every
// POLL_MS on a keep-alive connection, no cursor.
//
// Each acknowledgement (a version received and parsed) is timed on the
// machine's clock (performance.timeOrigin + now, comparable across
// processes); once every subscriber of the slice has a version, its times go
// to the parent: {version, times}. Asked {report: version}, the times so far.
//
// argv: port first count mode pollMs

import net from "node:net";
import { feedKey } from "../src/config-center/instance-files.ts";

const [port, first, count] = process.argv.slice(2, 5).map(Number) as [number, number, number];
const mode = process.argv[5] as "push" | "polling";
const POLL_MS = Number(process.argv[6] ?? 1000);
const OPEN_BATCH = 250;

let stopped = false;
let errors = 0;
const sockets = new Set<net.Socket>();
/** The last version each subscriber acknowledged (0: none). */
const acked = new Int32Array(count);
/** Per version: the times of its acknowledgements. */
const times = new Map<number, number[]>();
/** Subscribers that have had their first version (the parent waits for all). */
let ready = 0;
let onReady: () => void = () => {};

const now = () => performance.timeOrigin + performance.now();

function ack(k: number, version: number): void {
  if (acked[k] === version) return;
  if (acked[k] === 0 && ++ready === count) onReady();
  acked[k] = version;
  let t = times.get(version);
  if (!t) {
    t = [];
    times.set(version, t);
  }
  t.push(now());
  if (t.length === count) {
    process.send?.({ version, times: t });
    times.delete(version);
  }
}

const pathOf = (k: number) => {
  const id = `i${first + k}`;
  return `/config/${id}?key=${feedKey("bench", id)}`;
};

/**
 * One HTTP/1.1 connection that reads responses one after another: a head,
 * then a Content-Length or chunked body (onBody once whole), or for an
 * endless stream (SSE) each chunk as it comes (onChunk). Bytes are read as
 * latin1 so lengths are byte counts.
 */
function connection(
  onBody: (status: number, body: string) => void,
  onChunk: (text: string) => void,
  onClose: () => void,
  streaming = false,
): net.Socket {
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  socket.setEncoding("latin1");
  sockets.add(socket);
  let buf = "";
  let status = 0;
  /** Body bytes still wanted (-1: reading a head; -2: chunked; -3: a body to the connection's end). */
  let want = -1;
  let chunks = "";
  socket.on("data", (data: string) => {
    buf += data;
    for (;;) {
      if (want === -1) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (length) want = Number(length[1]);
        else if (/\r\ntransfer-encoding: *chunked/i.test(head)) want = -2;
        else want = streaming && status === 200 ? -3 : 0;
      } else if (want === -3) {
        if (buf) onChunk(buf);
        buf = "";
        return;
      } else if (want === -2) {
        const line = buf.indexOf("\r\n");
        if (line < 0) return;
        const size = Number.parseInt(buf.slice(0, line), 16);
        if (buf.length < line + 2 + size + 2) return;
        const text = buf.slice(line + 2, line + 2 + size);
        buf = buf.slice(line + 2 + size + 2);
        if (size === 0) {
          want = -1;
          onBody(status, chunks);
          chunks = "";
        } else if (streaming) onChunk(text);
        else chunks += text;
      } else {
        if (buf.length < want) return;
        const body = buf.slice(0, want);
        buf = buf.slice(want);
        want = -1;
        onBody(status, body);
      }
    }
  });
  socket.on("error", () => {});
  socket.on("close", () => {
    sockets.delete(socket);
    onClose();
  });
  return socket;
}

const get = (socket: net.Socket, path: string, headers = "") =>
  socket.write(`GET ${path} HTTP/1.1\r\nhost: feed\r\n${headers}\r\n`);

/** A long poll that follows the version cursor, reconnecting when its connection ends. */
function longPoll(k: number): void {
  let since = 0;
  const ask = (s: net.Socket) => get(s, since ? `${pathOf(k)}&since=${since}&timeoutMs=60000` : pathOf(k));
  const open = () => {
    const socket = connection(
      (status, body) => {
        if (status === 200) {
          since = (JSON.parse(body) as { version: number }).version;
          ack(k, since);
        } else if (status !== 304) errors++;
        if (!stopped) ask(socket);
      },
      () => errors++,
      () => {
        if (stopped) return;
        errors++;
        setTimeout(open, 100);
      },
    );
    ask(socket);
  };
  open();
}

/** An SSE stream that reconnects (with Last-Event-ID) when it breaks. */
function stream(k: number): void {
  let last = 0;
  const open = () => {
    let text = "";
    const socket = connection(
      () => errors++,
      (chunk) => {
        text += chunk;
        let end = text.indexOf("\n\n");
        while (end >= 0) {
          const frame = text.slice(0, end);
          text = text.slice(end + 2);
          const id = /^id: (\d+)$/m.exec(frame);
          if (id) {
            // Parse the data as a client would before it counts as acknowledged.
            const data = /^data: (.*)$/m.exec(frame);
            const version = (JSON.parse(data?.[1] ?? "{}") as { version: number }).version;
            if (version === Number(id[1])) {
              last = version;
              ack(k, version);
            } else errors++;
          }
          end = text.indexOf("\n\n");
        }
      },
      () => {
        if (stopped) return;
        errors++;
        setTimeout(open, 100);
      },
      true,
    );
    get(
      socket,
      `${pathOf(k)}&stream=sse`,
      `accept: text/event-stream\r\n${last ? `last-event-id: ${last}\r\n` : ""}`,
    );
  };
  open();
}

/** Connections made (pollers open theirs in batches, before their first GET). */
let connected = 0;

/**
 * A plain poller: GET every POLL_MS, no cursor. It connects now; the polls
 * start when the returned function is called (the first at a random phase).
 */
function poller(k: number): () => void {
  let started = 0;
  let socket: net.Socket | undefined;
  const connect = () => {
    socket = connection(
      (status, body) => {
        if (status === 200) ack(k, (JSON.parse(body) as { version: number }).version);
        else errors++;
        setTimeout(ask, Math.max(0, POLL_MS - (performance.now() - started)));
      },
      () => errors++,
      () => {
        socket = undefined;
        if (stopped) return;
        errors++;
        setTimeout(ask, 100);
      },
    );
    socket.once("connect", () => connected++);
  };
  const ask = () => {
    if (stopped) return;
    started = performance.now();
    if (!socket) connect();
    get(socket as net.Socket, pathOf(k));
  };
  connect();
  return () => setTimeout(ask, Math.random() * POLL_MS);
}

process.on("message", (m: { report?: number; cpu?: boolean; stop?: boolean }) => {
  if (m.cpu) process.send?.({ cpu: process.cpuUsage(), errors });
  if (m.report !== undefined) {
    process.send?.({ version: m.report, times: times.get(m.report) ?? [], partial: true });
    times.delete(m.report);
  }
  if (m.stop) {
    stopped = true;
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
process.on("disconnect", () => process.exit(0));

const allReady = new Promise<void>((resolve) => {
  onReady = resolve;
});
// Open in batches so the listen backlog is never the thing measured.
// Pollers all connect before any polls, so their polls do not hold later connections up.
const polls: (() => void)[] = [];
for (let start = 0; start < count; start += OPEN_BATCH) {
  const target = Math.min(count, start + OPEN_BATCH);
  for (let k = start; k < target; k++) {
    if (mode === "polling") polls.push(poller(k));
    else if ((first + k) % 2 === 0) longPoll(k);
    else stream(k);
  }
  const done = () => (mode === "push" ? ready : connected) >= target;
  while (!done() && !stopped) await new Promise((res) => setTimeout(res, 5));
}
for (const start of polls) start();
await allReady;
process.send?.({ ready: true });
