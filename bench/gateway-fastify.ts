// The Node peer of the benchmark (a child of bench/gateway.ts): Fastify with
// @fastify/http-proxy in front of UPSTREAM, using its default undici keep-alive
// pool. Prints `{"port":N}` once it listens on 127.0.0.1.

import proxy from "@fastify/http-proxy";
import Fastify from "fastify";

const upstream = process.env.UPSTREAM;
if (!upstream) throw new Error("UPSTREAM is not set");
const app = Fastify({ logger: false });
await app.register(proxy, { upstream });
const address = await app.listen({ host: "127.0.0.1", port: Number(process.env.PORT ?? 0) });
console.log(JSON.stringify({ port: Number(new URL(address).port) }));
const stop = () => {
  app.close().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
