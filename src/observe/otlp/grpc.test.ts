import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { connect } from "node:http2";
import { test } from "node:test";
import { signServerCertificate } from "../../common/server-certificate.ts";
import { type Forward, startGrpcServer } from "./grpc.ts";

const TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/** One unary Export call; its grpc-status and response body. */
async function exportCall(url: string): Promise<{ status: string; body: Buffer }> {
  // A self-signed certificate: the test checks the TLS path, not who signed it.
  const session = connect(url, { rejectUnauthorized: false });
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": TRACES,
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0x00]));
    let status = "";
    stream.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    stream.on("trailers", (h) => {
      status = String(h["grpc-status"]);
    });
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return { status, body: Buffer.concat(chunks) };
  } finally {
    session.close();
  }
}

test("a listening gRPC server has not loaded node:http2; its first connection loads it", () => {
  const script = `
    import { startGrpcServer } from ${JSON.stringify(import.meta.resolve("./grpc.ts"))};
    import { connect } from "node:net";
    const loaded = () => process.moduleLoadList.includes("NativeModule http2");
    const server = await startGrpcServer({ host: "127.0.0.1", port: 0, forward: async () => ({ status: 200, body: Buffer.alloc(0) }) });
    const before = loaded();
    const socket = connect(server.port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    await server.close();
    console.log(JSON.stringify({ before, after: loaded() }));
  `;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.deepEqual(JSON.parse(out), { before: false, after: true });
});

test("cleartext and TLS listeners hand each Export call to forward", async (t) => {
  const seen: string[] = [];
  const forward: Forward = async (signal, message) => {
    seen.push(`${signal} ${message.toString("hex")}`);
    return { status: 200, body: Buffer.alloc(0) };
  };
  const plain = await startGrpcServer({ host: "127.0.0.1", port: 0, forward });
  t.after(() => plain.close());
  assert.match(plain.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(await exportCall(plain.url), { status: "0", body: Buffer.from([0, 0, 0, 0, 0]) });

  const tls = await signServerCertificate(
    undefined,
    "localhost",
    { dns: ["localhost"], ips: ["127.0.0.1"] },
    1,
  );
  const secure = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    tls: { cert: tls.cert, key: tls.key },
    forward,
  });
  t.after(() => secure.close());
  assert.match(secure.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(await exportCall(secure.url), { status: "0", body: Buffer.from([0, 0, 0, 0, 0]) });
  const cleartext = await exportCall(secure.url.replace("https:", "http:")).catch((err: Error) => err);
  assert.ok(
    cleartext instanceof Error || cleartext.status !== "0",
    "the TLS port does not speak cleartext HTTP/2",
  );
  assert.deepEqual(seen, ["traces 0a00", "traces 0a00"]);
});
