// herd's pre-receive hook (plain JavaScript: it runs as it is, wherever herd is installed).
//
// git receive-pack runs it with the pushed ref updates on stdin ("<old> <new> <ref>" lines)
// and the new objects still in quarantine. It hands them to the control plane over the
// socket the server named in HERD_GIT_SOCKET, with the push's id, then prints what the
// control plane sends (the build's and rollout's progress, shown to the pusher as
// "remote:" lines) and exits with the code it sends last: 0 accepts the push, else git
// refuses it (the ref keeps its old value).
import { connect } from "node:net";

const socketPath = process.env.HERD_GIT_SOCKET;
const push = process.env.HERD_GIT_PUSH;
if (!socketPath || !push) {
  process.stderr.write("herd: push through the control plane's git remote (herd git remote --app NAME)\n");
  process.exit(1);
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const updates = input
  .split("\n")
  .filter(Boolean)
  .map((line) => {
    const [old, next, ref] = line.split(" ");
    return { old, new: next, ref };
  });

let exit = 1;
let buffered = "";
const socket = connect(socketPath);
socket.setEncoding("utf8");
socket.on("connect", () => {
  const env = process.env;
  socket.write(
    `${JSON.stringify({
      push,
      updates,
      objects: env.GIT_OBJECT_DIRECTORY ?? "",
      alternates: env.GIT_ALTERNATE_OBJECT_DIRECTORIES ?? "",
      quarantine: env.GIT_QUARANTINE_PATH ?? "",
    })}\n`,
  );
});
socket.on("data", (chunk) => {
  buffered += chunk;
  let nl = buffered.indexOf("\n");
  while (nl >= 0) {
    const message = JSON.parse(buffered.slice(0, nl));
    buffered = buffered.slice(nl + 1);
    if (typeof message.line === "string") process.stderr.write(`${message.line}\n`);
    if (typeof message.exit === "number") exit = message.exit;
    nl = buffered.indexOf("\n");
  }
});
socket.on("error", (err) => {
  process.stderr.write(`herd: lost the control plane (${err.message}); the push is refused\n`);
});
socket.on("close", () => process.exit(exit));
