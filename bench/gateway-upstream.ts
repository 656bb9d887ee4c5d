// The benchmark's upstream (a child of bench/gateway.ts): answers every request
// with `hello\n`, keeps connections alive, and prints `{"port":N}` once it listens.

import http from "node:http";
import type { AddressInfo } from "node:net";

const BODY = Buffer.from("hello\n");
const server = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": BODY.length });
  res.end(BODY);
});
// Proxies keep idle connections for a while: never close them first.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.maxRequestsPerSocket = 0;
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
