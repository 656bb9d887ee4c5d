/**
 * The `herd` command: finds the subcommand, parses its flags, runs it, and
 * turns failures into `herd: <message>` on stderr (exit 1; usage mistakes exit 2).
 *
 *   argv ─► splitCommand ─► up/server/agent/gateway/down ─► platform.ts (own flags) ─► daemons/
 *                       └─► deploy, apps, ps, … ─► parseArgs ─► CommandSpec.run(ctx)
 */

import { createInterface } from "node:readline/promises";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { HerdError } from "../common/errors.ts";
import { withDetails } from "./api-client.ts";
import { GLOBAL_OPTIONS, splitCommand, UsageError } from "./args.ts";
import { type CommandSpec, createContext, type Output } from "./context.ts";
import { PLATFORM_COMMANDS, type PlatformCommand } from "./platform-commands.ts";

/**
 * The registry of the API commands (commands.ts), loaded when one runs or help is asked
 * for: a platform role's process (herd up) holds none of their modules.
 */
type Registry = Pick<typeof import("./commands.ts"), "APP_COMMANDS" | "TEAM_COMMANDS" | "COMMANDS">;
const loadRegistry = (): Promise<Registry> => import("./commands.ts");

const GLOBAL_FLAG_HELP: [string, string][] = [
  ["--server URL", "the herd server (default: HERD_SERVER, else the context's, else the data dir's)"],
  [
    "--token TOKEN",
    "the API token (default: HERD_TOKEN, else the context's, else the data dir's admin-token)",
  ],
  ["--tenant NAME", "the tenant (default: HERD_TENANT, else the context's, else your only one)"],
  ["--context NAME", "a saved context (herd context) instead of the current one (default: HERD_CONTEXT)"],
  ["--ca FILE", "the CA that signed an https server's certificate (default: HERD_CA, else the context's)"],
  ["--json", "print the API's JSON instead of tables"],
  ["-a NAME", "the same as --app NAME, for commands that take one"],
  ["-h, --help", "show help"],
];

/** Everything main needs from the process; tests pass their own. */
export interface MainIo {
  stdout: Output;
  stderr: Output;
  env: Record<string, string | undefined>;
  cwd: string;
  /** Whether stdin is a terminal (destroy confirmations ask there). */
  stdinIsTTY: boolean;
  /** Reads a secret (herd login's token); default: the terminal without echo, or piped stdin. */
  readSecret?: (question: string) => Promise<string>;
  now?: () => number;
  home?: string;
  interrupt?: () => AbortSignal;
}

/** The overview printed by `herd`, `herd help` and `herd --help`. */
export function overviewHelp({ APP_COMMANDS, TEAM_COMMANDS, COMMANDS }: Registry): string {
  const width = Math.max(...[...PLATFORM_COMMANDS, ...COMMANDS].map((c) => c.name.length)) + 3;
  const line = (name: string, summary: string) => `  ${name.padEnd(width)}${firstSentence(summary)}`;
  return [
    "herd: a self-hosted PaaS",
    "",
    "Usage: herd COMMAND [ARGS] [FLAGS]",
    "",
    "Run the platform:",
    ...PLATFORM_COMMANDS.map((c) => line(c.name, c.summary)),
    "",
    "Work with apps:",
    ...APP_COMMANDS.map((c) => line(c.name, c.summary)),
    "",
    "Teams and access:",
    ...TEAM_COMMANDS.map((c) => line(c.name, c.summary)),
    `  ${"help".padEnd(width)}Show help for a command: herd help COMMAND`,
    "",
    "Global flags:",
    ...flagLines(GLOBAL_FLAG_HELP),
    "",
    "Run `herd help COMMAND` (or `herd COMMAND --help`) for a command's flags.",
  ].join("\n");
}

/** The help of one command: usage, what it does, its flags, the global flags. */
export function commandHelp(spec: CommandSpec): string {
  const usage = spec.usage.split("\n");
  return [
    `Usage: ${usage[0]}`,
    ...usage.slice(1).map((u) => `       ${u}`),
    "",
    spec.summary,
    ...(spec.flags?.length ? ["", "Flags:", ...flagLines(spec.flags)] : []),
    "",
    "Global flags:",
    ...flagLines(GLOBAL_FLAG_HELP),
  ].join("\n");
}

function flagLines(flags: [string, string][]): string[] {
  const width = Math.max(...flags.map(([f]) => f.length)) + 3;
  return flags.map(([flag, text]) => `  ${flag.padEnd(width)}${text}`);
}

/** Runs the herd command line and returns the exit code. */
export async function main(argv: readonly string[], io: MainIo): Promise<number> {
  const { command, rest } = splitCommand(argv);
  const platform = PLATFORM_COMMANDS.find((c) => c.name === command);
  if (platform) {
    try {
      return await runPlatform(platform, rest);
    } catch (err) {
      return report(io.stderr, err);
    }
  }
  let spec: CommandSpec | undefined;
  try {
    const registry = await loadRegistry();
    if (command === undefined || command === "help") {
      const topic = command === "help" ? splitCommand(rest).command : undefined;
      return await showHelp(io, registry, topic);
    }
    spec = registry.COMMANDS.find((c) => c.name === command);
    if (!spec) throw new UsageError(`unknown command: ${command}`);

    const { values, positionals } = parseFlags(spec, rest);
    if (values.help) {
      io.stdout.write(`${commandHelp(spec)}\n`);
      return 0;
    }
    const ctx = createContext({
      flags: {
        server: values.server as string | undefined,
        token: values.token as string | undefined,
        tenant: values.tenant as string | undefined,
        ca: values.ca as string | undefined,
        context: values.context as string | undefined,
        json: values.json === true,
      },
      cwd: io.cwd,
      env: io.env,
      stdout: io.stdout,
      stderr: io.stderr,
      prompt: io.stdinIsTTY ? askTerminal : undefined,
      readSecret: io.readSecret ?? (io.stdinIsTTY ? askSecret : readPipedLine),
      now: io.now,
      home: io.home,
      interrupt: io.interrupt,
    });
    return await spec.run(ctx, values, positionals);
  } catch (err) {
    return report(io.stderr, err, (await loadRegistry()).COMMANDS);
  }
}

function parseFlags(spec: CommandSpec, args: string[]) {
  const options = { ...GLOBAL_OPTIONS, ...withShortApp(spec.options) };
  try {
    return parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(flagProblem((err as Error).message, options), spec.name);
    }
    throw err;
  }
}

/** `-a NAME` for `--app NAME` wherever a command takes an app, as heroku's CLI has it. */
function withShortApp(options: CommandSpec["options"]): CommandSpec["options"] {
  const app = options?.app;
  return app?.type === "string" ? { ...options, app: { ...app, short: "a" } } : options;
}

/** node:util's parseArgs messages, said the way herd says things (they talk of positionals and '-XYZ'). */
function flagProblem(message: string, options: ParseArgsOptionsConfig): string {
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag ${unknown[1]}`;
  const ambiguous = /^Option '([^']+)' argument is ambiguous/.exec(message);
  if (ambiguous) {
    const flag = ambiguous[1];
    const long = Object.entries(options).find(([, o]) => `-${o.short}` === flag)?.[0];
    return `${flag} needs a value; for one that starts with "-", write ${long ? `--${long}` : flag}=VALUE`;
  }
  const missing = /^Option '(?:-\w, )?(\S+) <value>' argument missing/.exec(message);
  if (missing) return `${missing[1]} needs a value`;
  return message.split("\n")[0] as string;
}

async function showHelp(io: MainIo, registry: Registry, topic: string | undefined): Promise<number> {
  if (topic === undefined) {
    io.stdout.write(`${overviewHelp(registry)}\n`);
    return 0;
  }
  const platform = PLATFORM_COMMANDS.find((c) => c.name === topic);
  if (platform) return runPlatform(platform, ["--help"]);
  const spec = registry.COMMANDS.find((c) => c.name === topic);
  if (!spec) throw new UsageError(`no such command: ${topic}`);
  io.stdout.write(`${commandHelp(spec)}\n`);
  return 0;
}

async function runPlatform(command: PlatformCommand, args: string[]): Promise<number> {
  // Loaded on demand: `herd ps` should not pay for the server's modules.
  const platform = await import("./platform.ts");
  const run = {
    up: platform.runUp,
    server: platform.runServer,
    agent: platform.runAgent,
    gateway: platform.runGateway,
    down: platform.runDown,
  }[command.name];
  return run(args);
}

/**
 * Prints an error as `herd: <message>` and returns its exit code; a usage
 * mistake in one of `commands` also prints that command's usage.
 */
export function report(stderr: Output, err: unknown, commands: readonly CommandSpec[] = []): number {
  if (err instanceof UsageError) {
    const spec = commands.find((c) => c.name === err.command);
    const usage = spec ? `usage: ${spec.usage.split("\n").join("\n       ")}\n` : "";
    const more = spec ? `herd help ${spec.name}` : "herd help";
    stderr.write(`herd: ${err.message}\n${usage}Run \`${more}\` for more.\n`);
    return 2;
  }
  if (err instanceof HerdError) {
    stderr.write(`herd: ${withDetails(err.message, err.details)}\n`);
    return 1;
  }
  stderr.write(`herd: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}

async function askTerminal(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** Asks on the terminal and reads a line without echoing it (a token being typed or pasted). */
async function askSecret(question: string): Promise<string> {
  const { stdin, stderr } = process;
  stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding("utf8");
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let text = "";
      stdin.on("data", (chunk: string) => {
        for (const ch of chunk) {
          if (ch === "\r" || ch === "\n" || ch === "\u0004") return resolve(text);
          if (ch === "\u0003") return reject(new Error("cancelled"));
          if (ch === "\u007f" || ch === "\b") text = text.slice(0, -1);
          else text += ch;
        }
      });
    });
  } finally {
    stdin.removeAllListeners("data");
    stdin.setRawMode(false);
    stdin.pause();
    stderr.write("\n");
  }
}

/** The first line of stdin when it is piped (`echo $TOKEN | herd login`). */
async function readPipedLine(): Promise<string> {
  let text = "";
  for await (const chunk of process.stdin) {
    text += chunk;
    if (text.includes("\n")) break;
  }
  return text.split("\n")[0] ?? "";
}

if (import.meta.main) {
  // `herd logs -f | head`: a reader that goes away ends the command quietly, as in other Unix tools.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  process.exitCode = await main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    stdinIsTTY: Boolean(process.stdin.isTTY),
  });
}

/** A summary's first sentence on one line: its first line, or more lines up to a sentence's end. */
function firstSentence(summary: string): string {
  const lines = summary.split("\n");
  let text = lines[0];
  for (let i = 1; i < lines.length && !/\.$/.test(text); i++) text += ` ${lines[i].trim()}`;
  const end = text.search(/\.\s+[A-Z]/);
  return end < 0 ? text : text.slice(0, end + 1);
}
