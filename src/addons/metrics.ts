/**
 * An add-on server's metrics, pushed into herd's metrics store by a
 * companion loop its start script runs beside the server (no exporter and no
 * port of its own: on herd's shared host network a listening exporter would
 * be reachable by other tenants' instances of the node unless inside the
 * instance port range, and the add-on's one port is the server's).
 *
 *   every HERD_ADDON_METRICS_S (15 s): collect ─► Prometheus text with addon="<name>"
 *     postgres: psql over 127.0.0.1 (metrics.sql: backends, sizes, commits, rollbacks, tuples)
 *     redis:    redis-cli INFO over 127.0.0.1 (clients, used memory, commands, keys)
 *   ─► POST <agent's telemetry relay>/api/v1/metrics/write with the tenant's ingest token
 *      (the OTEL_* defaults every instance gets) ─► the API sets `tenant` ─► Tsdb
 *
 * `herd addons metrics NAME` reads the key figures back through the
 * tenant-scoped PromQL API (ADDON_FIGURES).
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";

/** Seconds between two pushes. */
export const METRICS_INTERVAL_S = 15;

/**
 * The shell function `addon_metrics_loop SERVER_PID` (written into start.sh):
 * calls `collect` (the kind's, defined before) each interval while the
 * server runs and pushes what it printed. Without an ingest endpoint (the
 * agent has no token for the tenant) it says so once and stops.
 */
export const PUSH_LOOP = `# Pushes the add-on's figures into herd through the agent's telemetry relay (see src/addons/metrics.ts).
addon_metrics_loop() {
  server="$1"
  endpoint="\${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
  base="\${endpoint%/api/v1/otlp}"
  case "\${OTEL_EXPORTER_OTLP_HEADERS:-}" in authorization=*) ;; *) base="" ;; esac
  if [ -z "$base" ] || [ "$base" = "$endpoint" ]; then
    echo "herd add-on metrics: no ingest endpoint for this instance; metrics are not pushed" >&2
    return 0
  fi
  # The token goes to curl in a file (mode 600), never on a command line others can read.
  hdr="$HERD_DATA_DIR/.metrics-headers"
  out="$HERD_DATA_DIR/.metrics.prom"
  umask 077
  printf 'authorization: %s\\ncontent-type: text/plain\\n' \\
    "$(printf %s "$OTEL_EXPORTER_OTLP_HEADERS" | sed -e 's/^authorization=//' -e 's/%20/ /g')" > "$hdr"
  failed=0
  while kill -0 "$server" 2>/dev/null; do
    if collect > "$out" 2>/dev/null && [ -s "$out" ]; then
      if curl -sS -f -m 10 -H @"$hdr" --data-binary @"$out" "$base/api/v1/metrics/write" >/dev/null 2>"$out.err"; then
        failed=0
      else
        # One line per outage, not one per interval.
        [ "$failed" = 1 ] || echo "herd add-on metrics: push failed: $(cat "$out.err")" >&2
        failed=1
      fi
    fi
    sleep "\${HERD_ADDON_METRICS_S:-${METRICS_INTERVAL_S}}"
  done
}
`;

/** The SQL that prints a PostgreSQL server's figures as Prometheus text (one line per row). */
export function postgresMetricsSql(addon: string): string {
  const l = `addon="${addon}"`;
  return `-- The add-on's figures as Prometheus text, pushed by start.sh's metrics loop.
SELECT 'pg_up{${l}} 1'
UNION ALL SELECT format('pg_settings_max_connections{${l}} %s', current_setting('max_connections'))
UNION ALL SELECT format('pg_connections{${l}} %s', count(*)) FROM pg_stat_activity WHERE backend_type = 'client backend'
UNION ALL SELECT format('pg_stat_database_numbackends{${l},datname="%s"} %s', datname, numbackends)
  FROM pg_stat_database WHERE datname IS NOT NULL
UNION ALL SELECT format('pg_stat_database_xact_commit{${l},datname="%s"} %s', datname, xact_commit)
  FROM pg_stat_database WHERE datname IS NOT NULL
UNION ALL SELECT format('pg_stat_database_xact_rollback{${l},datname="%s"} %s', datname, xact_rollback)
  FROM pg_stat_database WHERE datname IS NOT NULL
UNION ALL SELECT format('pg_stat_database_tup_inserted{${l},datname="%s"} %s', datname, tup_inserted)
  FROM pg_stat_database WHERE datname IS NOT NULL
UNION ALL SELECT format('pg_database_size_bytes{${l},datname="%s"} %s', datname, pg_database_size(datname))
  FROM pg_database WHERE NOT datistemplate;
`;
}

/** start.sh's `collect` for PostgreSQL (psql as the admin over 127.0.0.1); a server that does not answer is `pg_up 0`. */
export function postgresCollect(addon: string): string {
  return `collect() {
  PGPASSWORD="$ADDON_PASSWORD" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U herd -d postgres \\
    -X -q -t -A -v ON_ERROR_STOP=1 -f metrics.sql || echo 'pg_up{addon="${addon}"} 0'
}
`;
}

/** start.sh's `collect` for Redis (INFO as the admin over 127.0.0.1, turned into text by awk); no answer: `redis_up 0`. */
export function redisCollect(addon: string): string {
  const l = `addon=\\"${addon}\\"`;
  return `collect() {
  # redis-cli says why it failed on stdout too: its answer counts only when it is INFO's.
  info="$(REDISCLI_AUTH="$ADDON_PASSWORD" "$REDIS_CLI" -h 127.0.0.1 -p "$PORT" --no-auth-warning INFO 2>&1)" || info=""
  case "$info" in
    *redis_version:*) ;;
    *) echo 'redis_up{addon="${addon}"} 0'; return 0 ;;
  esac
  printf '%s\\n' "$info" | tr -d '\\r' | awk -F: '
    BEGIN { print "redis_up{${l}} 1" }
    $1 == "connected_clients" { print "redis_connected_clients{${l}} " $2 }
    $1 == "maxclients" { print "redis_config_maxclients{${l}} " $2 }
    $1 == "used_memory" { print "redis_memory_used_bytes{${l}} " $2 }
    $1 == "total_commands_processed" { print "redis_commands_processed_total{${l}} " $2 }
    $1 == "instantaneous_ops_per_sec" { print "redis_instantaneous_ops_per_sec{${l}} " $2 }
    $1 == "keyspace_hits" { print "redis_keyspace_hits_total{${l}} " $2 }
    $1 == "keyspace_misses" { print "redis_keyspace_misses_total{${l}} " $2 }
    $1 ~ /^db[0-9]+$/ { split($2, kv, ","); split(kv[1], k, "="); print "redis_db_keys{${l},db=\\"" $1 "\\"} " k[2]; dbs++ }
    END { if (!dbs) print "redis_db_keys{${l},db=\\"db0\\"} 0" }'
}
`;
}

/** Writes metrics.sql (postgres) beside start.sh. */
export function writePostgresMetricsSql(dir: string, addon: string): void {
  writeFileSync(join(dir, "metrics.sql"), postgresMetricsSql(addon));
}

/** The figures `herd addons metrics` shows, by kind: a label and a PromQL expression (NAME replaced). */
export const ADDON_FIGURES: Record<string, { label: string; query: string; unit?: "bytes" }[]> = {
  postgres: [
    { label: "up", query: 'max(pg_up{addon="NAME"})' },
    { label: "connections", query: 'max(pg_connections{addon="NAME"})' },
    { label: "max connections", query: 'max(pg_settings_max_connections{addon="NAME"})' },
    {
      label: "db size (bound databases)",
      query: 'sum(pg_database_size_bytes{addon="NAME",datname=~"db_.*"})',
      unit: "bytes",
    },
    {
      label: "commits/s (5m)",
      query: 'sum(rate(pg_stat_database_xact_commit{addon="NAME"}[5m]))',
    },
    {
      label: "rows inserted/s (5m)",
      query: 'sum(rate(pg_stat_database_tup_inserted{addon="NAME"}[5m]))',
    },
  ],
  redis: [
    { label: "up", query: 'max(redis_up{addon="NAME"})' },
    { label: "clients", query: 'max(redis_connected_clients{addon="NAME"})' },
    { label: "max clients", query: 'max(redis_config_maxclients{addon="NAME"})' },
    { label: "used memory", query: 'max(redis_memory_used_bytes{addon="NAME"})', unit: "bytes" },
    { label: "keys", query: 'sum(redis_db_keys{addon="NAME"})' },
    { label: "ops/s (5m)", query: 'sum(rate(redis_commands_processed_total{addon="NAME"}[5m]))' },
  ],
};

/**
 * The addresses a server listens on: loopback and the node's own addresses
 * (`hostname -I`), never the wildcard, so an address added later (a
 * container bridge, a VPN) is not served without a restart.
 */
export const LISTEN_ADDRESSES = `listen="127.0.0.1"
for a in $(hostname -I 2>/dev/null); do
  case "$a" in fe80:*) ;; *) listen="$listen $a" ;; esac
done
`;
