#!/usr/bin/env bash
# Run the Google Cloud Pub/Sub emulator on 127.0.0.1 for local tests and the
# streaming demo.
#
#   scripts/pubsub.sh start    start in the background, wait until it listens
#   scripts/pubsub.sh stop     stop the emulator and wait for it to exit
#   scripts/pubsub.sh status   exit 0 when the emulator started here runs
#   scripts/pubsub.sh env      print the PUBSUB_EMULATOR_HOST line to export
#
# The emulator ships with the Google Cloud CLI as the component (and Debian
# package) google-cloud-cli-pubsub-emulator. It keeps topics, subscriptions
# and messages in memory, so every start begins empty. This script runs the
# component's launcher directly rather than `gcloud beta emulators pubsub
# start`: the launcher execs the JVM, so the pid file names the server
# itself. The pid file, the log and the env.yaml that `gcloud beta emulators
# pubsub env-init --data-dir=.cache/pubsub/PORT` reads live in
# .cache/pubsub/PORT/.
#
# Environment (defaults in brackets):
#   PUBSUB_PORT               port to listen on, on 127.0.0.1 [8085]
#   PUBSUB_EMULATOR_OPTS      JVM flags [-Xms64m -Xmx512m]
#   PUBSUB_START_TIMEOUT_SEC  how long start waits for readiness [90]
#   PUBSUB_EMULATOR_BIN       launcher [from the gcloud installation]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PUBSUB_PORT=${PUBSUB_PORT:-8085}
PUBSUB_EMULATOR_OPTS=${PUBSUB_EMULATOR_OPTS:--Xms64m -Xmx512m}
PUBSUB_START_TIMEOUT_SEC=${PUBSUB_START_TIMEOUT_SEC:-90}
HOST=127.0.0.1

# One folder per port, so emulators on two ports never share a pid file.
RUN="$ROOT/.cache/pubsub/$PUBSUB_PORT"
PID_FILE="$RUN/emulator.pid"
LOG="$RUN/emulator.log"

log() { echo "pubsub.sh: $*" >&2; }
die() { log "$*"; exit 1; }

find_launcher() {
  if [[ -n "${PUBSUB_EMULATOR_BIN:-}" ]]; then
    echo "$PUBSUB_EMULATOR_BIN"
    return 0
  fi
  local gcloud sdk
  gcloud=$(command -v gcloud) \
    || die "gcloud not found: install google-cloud-cli-pubsub-emulator"
  # gcloud is a symlink into <sdk>/bin/ on Debian installs.
  sdk=$(dirname "$(dirname "$(readlink -f "$gcloud")")")
  echo "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
}

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(cat "$PID_FILE")
  # The pid may have been reused by an unrelated process after a reboot.
  if [[ -r "/proc/$pid/cmdline" ]] \
    && tr '\0' ' ' <"/proc/$pid/cmdline" \
      | grep -q "cloud-pubsub-emulator.* --port=$PUBSUB_PORT "; then
    echo "$pid"
    return 0
  fi
  return 1
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$PUBSUB_PORT") 2>/dev/null
}

emulator_ready() {
  grep -q "Server started, listening on $PUBSUB_PORT" "$LOG" 2>/dev/null \
    && port_open
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + PUBSUB_START_TIMEOUT_SEC))
  until emulator_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$LOG" >&2 || true
      rm -f "$PID_FILE"
      die "emulator exited during start-up, see $LOG"
    fi
    if ((SECONDS > deadline)); then
      die "emulator not ready after ${PUBSUB_START_TIMEOUT_SEC}s, see $LOG"
    fi
    sleep 0.2
  done
}

# The file that `gcloud beta emulators pubsub env-init` reads.
write_env_yaml() {
  echo "PUBSUB_EMULATOR_HOST: $HOST:$PUBSUB_PORT" >"$RUN/env.yaml"
}

cmd_start() {
  local pid launcher
  if pid=$(running_pid); then
    wait_ready "$pid"
    log "already running (pid $pid) on $HOST:$PUBSUB_PORT"
    return 0
  fi
  rm -f "$PID_FILE"
  port_open && die "port $PUBSUB_PORT is in use by another process; \
set PUBSUB_PORT to a free port"
  command -v java >/dev/null || die "java not found: install a JDK 17"
  launcher=$(find_launcher)
  [[ -x "$launcher" ]] || die "emulator launcher $launcher not found: \
install google-cloud-cli-pubsub-emulator"
  mkdir -p "$RUN"
  write_env_yaml
  # A fresh log, so the readiness check finds only this run's start line.
  CLOUD_PUBSUB_EMULATOR_OPTS="$PUBSUB_EMULATOR_OPTS" nohup "$launcher" \
    --host="$HOST" --port="$PUBSUB_PORT" >"$LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"
  wait_ready "$pid"
  log "started (pid $pid) on $HOST:$PUBSUB_PORT"
}

cmd_stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "emulator did not exit within 10s of SIGTERM, sending SIGKILL"
    kill -KILL "$pid"
  fi
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if pid=$(running_pid) && emulator_ready; then
    log "running (pid $pid) on $HOST:$PUBSUB_PORT"
    return 0
  fi
  log "not running"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export PUBSUB_EMULATOR_HOST=$HOST:$PUBSUB_PORT" ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
