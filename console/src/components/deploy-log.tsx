// A deploy's log as the console shows it: build output, rollout steps, health
// checks and the outcome, one line each with its time and kind.

/** One entry of GET /apps/:app/deploys/:id/log (NDJSON). */
export interface DeployLogLine {
  time: string;
  type: "build" | "step" | "health" | "done";
  message: string;
  state?: string;
}

export function DeployLogView({ lines, testId }: { lines: readonly DeployLogLine[]; testId: string }) {
  return (
    <pre className="log" aria-live="polite" data-testid={testId}>
      {lines.map((l) => `${l.time.slice(11, 19)} ${l.type.padEnd(6)} ${l.message}`).join("\n")}
    </pre>
  );
}
