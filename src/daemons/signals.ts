/**
 * Waits for SIGINT or SIGTERM. Later signals are absorbed while shutting down
 * (one Ctrl-C often arrives twice: from the terminal and from a wrapper that
 * forwards it); a signal more than 2 s after the first forces an exit.
 */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    let first = 0;
    const on = (sig: string) => {
      if (first === 0) {
        first = Date.now();
        resolve(sig);
      } else if (Date.now() - first > 2000) {
        process.stderr.write(`${sig} again: exiting now\n`);
        process.exit(130);
      }
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}
