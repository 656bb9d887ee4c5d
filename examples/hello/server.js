// The quick-start app: answers every request with a greeting, its instance and release.
import { createServer } from "node:http";

const port = Number(process.env.PORT ?? 3000);
const greeting = process.env.GREETING ?? "hello";
const instance = process.env.HERD_INSTANCE ?? "local";
const release = process.env.HERD_RELEASE ?? "dev";

const server = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok\n");
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" });
  res.end(`${greeting} from ${instance} (release ${release})\n`);
});

server.listen(port, () => console.log(`hello listening on ${port}`));

// Finish in-flight requests on SIGTERM, then exit.
process.on("SIGTERM", () => {
  console.log("SIGTERM: closing");
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
});
