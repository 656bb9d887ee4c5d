/**
 * A small structured logger: one line per message, `time level component message key=value…`.
 * Components get a child logger with their name; tests pass a silent one.
 */

export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export function createLogger(
  component = "herd",
  minLevel: Level = (process.env.HERD_LOG_LEVEL as Level) || "info",
  write: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Logger {
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < ORDER[minLevel]) return;
    let line = `${new Date().toISOString()} ${level.padEnd(5)} ${component}: ${msg}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        const s = v instanceof Error ? v.message : typeof v === "string" ? v : JSON.stringify(v);
        line += ` ${k}=${/\s/.test(s) ? JSON.stringify(s) : s}`;
      }
    }
    write(line);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (c) => createLogger(`${component}/${c}`, minLevel, write),
  };
}

/** A logger that prints nothing (tests). */
export const silentLogger: Logger = createLogger("silent", "error", () => {});
