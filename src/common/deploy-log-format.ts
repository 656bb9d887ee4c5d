/**
 * A deploy log entry as people read it, Heroku style: `herd deploy`, `herd
 * deploys show` and `git push herd`'s `remote:` lines print the same.
 */

const INDENT = "       ";

/** Formats one deploy log entry (controllers/deploy-log.ts) as lines. */
export function formatDeployEntry(entry: { type: string; message: string }): string {
  const lines = entry.message.split("\n");
  // The builder marks its own steps Heroku style ("-----> Installing…") and indents what it prints under
  // them ("       added 1 package"); a line it left flush is indented here, once.
  if (entry.type === "build")
    return lines
      .map((l) => (l.startsWith("-----> ") || l.startsWith(INDENT) ? l : `${INDENT}${l}`))
      .join("\n");
  // A health check's outcome belongs to the rollout step above it.
  if (entry.type === "health") return lines.map((l) => `${INDENT}${l}`).join("\n");
  return [`-----> ${lines[0]}`, ...lines.slice(1).map((l) => `${INDENT}${l}`)].join("\n");
}
