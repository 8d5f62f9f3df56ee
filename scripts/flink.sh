#!/usr/bin/env bash
# Run a local Flink session cluster for Beam's FlinkRunner.
#
# The Flink distribution comes from the apache-flink package on PyPI, which
# ships Flink's bin/, lib/ and conf/ inside the pyflink module. That package
# pins an old apache-beam, so it lives in its own virtualenv (.flink-venv)
# and never in the project's .venv. The cluster reads the configuration
# that this script writes to .cache/flink/conf; site-packages stays as
# installed.
#
# Usage: scripts/flink.sh COMMAND
#   start              Start one JobManager and one TaskManager and wait
#                      until the TaskManager has registered. A no-op when
#                      the cluster is already up.
#   stop               Stop every TaskManager and the JobManager.
#   status             Print the processes and the REST overview. Exits 0
#                      when the REST API responds, 3 otherwise.
#   kill-taskmanager   Kill the TaskManager JVMs with SIGKILL, to test
#                      recovery. The JobManager notices after the heartbeat
#                      timeout (heartbeat.timeout below).
#   start-taskmanager  Start one more TaskManager and wait until it has
#                      registered.
#
# Environment:
#   FLINK_VERSION            apache-flink release. Default 1.19.3.
#   FLINK_PYTHON             Python used to create .flink-venv; apache-flink
#                            1.19 supports 3.8 to 3.11. Default python3.
#   FLINK_REST_PORT          REST and web UI port on 127.0.0.1. Default 8081.
#   FLINK_START_TIMEOUT_SEC  Maximum wait for each process to come up, in
#                            seconds. Default 120.
#
# Logs, pid files, checkpoints and savepoints are under .cache/flink/.
set -euo pipefail

FLINK_VERSION="${FLINK_VERSION:-1.19.3}"
FLINK_PYTHON="${FLINK_PYTHON:-python3}"
REST_HOST=127.0.0.1
REST_PORT="${FLINK_REST_PORT:-8081}"
START_TIMEOUT_SEC="${FLINK_START_TIMEOUT_SEC:-120}"
# Flink's own daemon scripts send SIGKILL 10 s after SIGTERM, so 30 s covers
# a JVM that is busy writing a final checkpoint.
STOP_TIMEOUT_SEC=30
# Two slots, one for each core of a small developer machine or CI runner.
TASK_SLOTS=2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.flink-venv"
STATE_DIR="$ROOT/.cache/flink"
CONF_DIR="$STATE_DIR/conf"
LOG_DIR="$STATE_DIR/log"
PID_DIR="$STATE_DIR/run"
REST_URL="http://$REST_HOST:$REST_PORT"

# Flink's daemon scripts name pid and log files after FLINK_IDENT_STRING,
# which defaults to $USER, and $USER can be unset in non-login shells.
export FLINK_IDENT_STRING=vitalwatch
JM_PID_FILE="$PID_DIR/flink-$FLINK_IDENT_STRING-standalonesession.pid"
TM_PID_FILE="$PID_DIR/flink-$FLINK_IDENT_STRING-taskexecutor.pid"
JM_MAIN_CLASS=org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint
TM_MAIN_CLASS=org.apache.flink.runtime.taskexecutor.TaskManagerRunner
SCRIPT_LOG="$LOG_DIR/flink-sh.log"

log() {
  echo "flink.sh: $*" >&2
}

fail() {
  log "error: $*"
  exit 1
}

# Print the log file of daemon DAEMON with index ID, as flink-daemon.sh
# names it.
daemon_log() {
  echo "$LOG_DIR/flink-$FLINK_IDENT_STRING-$1-$2-$HOSTNAME.log"
}

ensure_venv() {
  local stamp="$VENV/.apache-flink-$FLINK_VERSION" pip_log="$LOG_DIR/pip.log"
  [[ -f "$stamp" ]] && return
  "$FLINK_PYTHON" -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 11))' ||
    fail "apache-flink $FLINK_VERSION needs Python 3.8 to 3.11," \
      "but $FLINK_PYTHON is $("$FLINK_PYTHON" --version 2>&1);" \
      "set FLINK_PYTHON to a supported interpreter"
  log "installing apache-flink==$FLINK_VERSION into $VENV (log: $pip_log)"
  {
    "$FLINK_PYTHON" -m venv "$VENV" &&
      "$VENV/bin/pip" install --disable-pip-version-check \
        "apache-flink==$FLINK_VERSION" \
        "apache-flink-libraries==$FLINK_VERSION"
  } >>"$pip_log" 2>&1 ||
    fail "installing apache-flink==$FLINK_VERSION failed; read $pip_log"
  touch "$stamp"
}

find_flink_home() {
  local home
  for home in "$VENV"/lib/python3.*/site-packages/pyflink; do
    if [[ -x "$home/bin/bash-java-utils.sh" || -f "$home/bin/config.sh" ]]; then
      echo "$home"
      return
    fi
  done
  fail "no Flink distribution found under $VENV; delete $VENV and rerun"
}

write_config() {
  local flink_home="$1" new="$CONF_DIR/config.yaml.new" file
  mkdir -p "$CONF_DIR" "$STATE_DIR"/{checkpoints,savepoints,tmp,web}
  # The log4j and logback files are Flink's defaults. They write to the
  # file that flink-daemon.sh passes as log.file, which is under LOG_DIR.
  for file in "$flink_home"/conf/log4j*.properties "$flink_home"/conf/logback*.xml; do
    cp -f "$file" "$CONF_DIR/"
  done
  echo localhost >"$CONF_DIR/workers"
  echo "localhost:$REST_PORT" >"$CONF_DIR/masters"
  render_config "$flink_home" >"$new"
  if [[ -f "$CONF_DIR/config.yaml" ]] && ! cmp -s "$new" "$CONF_DIR/config.yaml" &&
    [[ -n "$(live_pids "$JM_PID_FILE" "$JM_MAIN_CLASS")" ]]; then
    log "configuration changed; run 'scripts/flink.sh stop' and start" \
      "again for it to take effect"
  fi
  mv "$new" "$CONF_DIR/config.yaml"
}

# Print config.yaml. Flink 1.19 reads config.yaml as standard YAML and
# accepts flattened keys. env.java.opts.all keeps the module flags of the
# packaged config.yaml that Flink needs on Java 17.
render_config() {
  local java_opts
  java_opts="$(sed -n 's/^ *all: //p' "$1/conf/config.yaml" | head -n 1)"
  cat <<EOF
# Generated by scripts/flink.sh. Edit the script instead.
env.java.opts.all: $java_opts
env.log.dir: $LOG_DIR
env.pid.dir: $PID_DIR

jobmanager.rpc.address: localhost
jobmanager.rpc.port: 6123
jobmanager.bind-host: localhost
jobmanager.memory.process.size: 1024m
jobmanager.execution.failover-strategy: region

taskmanager.host: localhost
taskmanager.bind-host: localhost
taskmanager.numberOfTaskSlots: $TASK_SLOTS
# 4 GB leaves the tasks about 1.5 GB of heap. With 1,728 MB they had
# 256 MB, and a streaming job of 1,000 devices at 1 reading/s ran out
# of heap within two minutes (the heap state backend keeps all state
# there).
taskmanager.memory.process.size: 4096m
# A bounded run of the vitals pipeline in batch mode needs 512 network
# buffers of 32 KiB for its shuffles, more than the default share of
# the process size (about 4,000 buffers, most taken by other tasks).
taskmanager.memory.network.min: 256m
taskmanager.memory.network.max: 256m
parallelism.default: 1

# The REST API and the web UI listen on loopback only.
rest.address: $REST_HOST
rest.bind-address: $REST_HOST
rest.port: $REST_PORT

state.backend.type: hashmap
state.checkpoints.dir: file://$STATE_DIR/checkpoints
state.savepoints.dir: file://$STATE_DIR/savepoints
execution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION

# A failed job restarts up to 3 times, 10 s apart, then fails for good.
restart-strategy.type: fixed-delay
restart-strategy.fixed-delay.attempts: 3
restart-strategy.fixed-delay.delay: 10 s

# A lost TaskManager is declared dead after 20 s instead of the default
# 50 s, so that recovery tests finish sooner.
heartbeat.interval: 5000
heartbeat.timeout: 20000

io.tmp.dirs: $STATE_DIR/tmp
web.tmpdir: $STATE_DIR/web
EOF
}

# Print the pids from PID_FILE that are alive and run MAIN_CLASS. The class
# check keeps a recycled pid from being taken for a Flink process.
live_pids() {
  local pid_file="$1" main_class="$2" pid
  [[ -f "$pid_file" ]] || return 0
  while read -r pid; do
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || continue
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$main_class"; then
      echo "$pid"
    fi
  done <"$pid_file"
}

# Print the response body of GET PATH on the REST API, or return status 1
# when the request fails or times out after 5 s.
rest_get() {
  curl -fsS --max-time 5 "$REST_URL$1" 2>/dev/null
}

# Print the ids of the TaskManagers that are registered with the
# JobManager, one per line.
registered_taskmanagers() {
  rest_get /taskmanagers |
    python3 -c 'import json, sys
for tm in json.load(sys.stdin)["taskmanagers"]:
    print(tm["id"])'
}

# Run a script from Flink's bin/ with this cluster's directories.
run_flink_script() {
  local flink_home="$1"
  shift
  FLINK_HOME="$flink_home" FLINK_CONF_DIR="$CONF_DIR" \
    FLINK_LOG_DIR="$LOG_DIR" FLINK_PID_DIR="$PID_DIR" \
    bash "$flink_home/bin/$1" "${@:2}" >>"$SCRIPT_LOG" 2>&1
}

start_jobmanager() {
  local flink_home="$1" log_file
  log_file="$(daemon_log standalonesession "$(pid_count "$JM_PID_FILE")")"
  if rest_get /config >/dev/null; then
    fail "$REST_URL responds, but no JobManager from $JM_PID_FILE is" \
      "running; stop the process that holds port $REST_PORT or set" \
      "FLINK_REST_PORT"
  fi
  log "starting the JobManager (log: $log_file)"
  run_flink_script "$flink_home" jobmanager.sh start ||
    fail "jobmanager.sh failed; read $SCRIPT_LOG"
  local deadline=$((SECONDS + START_TIMEOUT_SEC))
  until rest_get /config >/dev/null; do
    if [[ -z "$(live_pids "$JM_PID_FILE" "$JM_MAIN_CLASS")" ]]; then
      fail "the JobManager exited during startup; read $log_file"
    fi
    if ((SECONDS >= deadline)); then
      fail "the REST API at $REST_URL did not answer within" \
        "${START_TIMEOUT_SEC}s; read $log_file"
    fi
    sleep 1
  done
}

pid_count() {
  if [[ -f "$1" ]]; then
    wc -l <"$1"
  else
    echo 0
  fi
}

# Start a TaskManager and wait until the JobManager lists a TaskManager id
# that it did not list before.
start_taskmanager() {
  local flink_home="$1" before log_file pid_index
  before="$(registered_taskmanagers)" ||
    fail "the REST API at $REST_URL does not answer; run" \
      "'scripts/flink.sh start' first"
  pid_index="$(pid_count "$TM_PID_FILE")"
  log_file="$(daemon_log taskexecutor "$pid_index")"
  log "starting a TaskManager (log: $log_file)"
  run_flink_script "$flink_home" taskmanager.sh start ||
    fail "taskmanager.sh failed; read $SCRIPT_LOG"
  local pid
  pid="$(sed -n "$((pid_index + 1))p" "$TM_PID_FILE")"
  local deadline=$((SECONDS + START_TIMEOUT_SEC)) now
  while true; do
    now="$(registered_taskmanagers || true)"
    if [[ -n "$(comm -13 <(sort <<<"$before") <(sort <<<"$now") | grep .)" ]]; then
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      fail "the TaskManager (pid $pid) exited during startup; read $log_file"
    fi
    if ((SECONDS >= deadline)); then
      fail "the TaskManager (pid $pid) did not register within" \
        "${START_TIMEOUT_SEC}s; read $log_file"
    fi
    sleep 1
  done
  log "TaskManager pid $pid registered"
}

# Send SIGTERM to every pid in PID_FILE that runs MAIN_CLASS, then SIGKILL
# to those still alive after STOP_TIMEOUT_SEC.
stop_daemons() {
  local pid_file="$1" main_class="$2" name="$3" pids pid
  pids="$(live_pids "$pid_file" "$main_class")"
  if [[ -z "$pids" ]]; then
    rm -f "$pid_file"
    return
  fi
  log "stopping the $name (pid $(echo $pids))"
  kill -TERM $pids 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT_SEC))
  while [[ -n "$(live_pids "$pid_file" "$main_class")" ]]; do
    if ((SECONDS >= deadline)); then
      log "the $name did not stop within ${STOP_TIMEOUT_SEC}s; sending SIGKILL"
      kill -KILL $(live_pids "$pid_file" "$main_class") 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 1
  done
  rm -f "$pid_file"
}

cmd_start() {
  local started=$SECONDS flink_home
  mkdir -p "$LOG_DIR" "$PID_DIR"
  ensure_venv
  flink_home="$(find_flink_home)"
  write_config "$flink_home"

  if [[ -n "$(live_pids "$JM_PID_FILE" "$JM_MAIN_CLASS")" ]]; then
    rest_get /config >/dev/null ||
      fail "the JobManager is running but $REST_URL does not answer;" \
        "read the newest $LOG_DIR/flink-*-standalonesession-*.log"
  else
    start_jobmanager "$flink_home"
  fi

  if [[ -z "$(live_pids "$TM_PID_FILE" "$TM_MAIN_CLASS")" ]]; then
    start_taskmanager "$flink_home"
  fi
  log "Flink $FLINK_VERSION is up at $REST_URL" \
    "(web UI there too) after $((SECONDS - started))s"
}

cmd_stop() {
  stop_daemons "$TM_PID_FILE" "$TM_MAIN_CLASS" TaskManager
  stop_daemons "$JM_PID_FILE" "$JM_MAIN_CLASS" JobManager
  log "stopped"
}

cmd_status() {
  echo "JobManager pids: $(echo $(live_pids "$JM_PID_FILE" "$JM_MAIN_CLASS"))"
  echo "TaskManager pids: $(echo $(live_pids "$TM_PID_FILE" "$TM_MAIN_CLASS"))"
  local overview
  if ! overview="$(rest_get /overview)"; then
    echo "REST API: no answer at $REST_URL"
    return 3
  fi
  echo "REST API: $REST_URL"
  echo "overview: $overview"
}

cmd_kill_taskmanager() {
  local pids pid
  pids="$(live_pids "$TM_PID_FILE" "$TM_MAIN_CLASS")"
  [[ -n "$pids" ]] || fail "no TaskManager is running"
  log "killing the TaskManager with SIGKILL (pid $(echo $pids))"
  kill -KILL $pids
  for pid in $pids; do
    # A SIGKILLed process is gone once the kernel reaps it, so 10 s is ample.
    timeout 10 tail --pid="$pid" -f /dev/null ||
      fail "TaskManager pid $pid is still alive 10s after SIGKILL"
  done
}

cmd_start_taskmanager() {
  mkdir -p "$LOG_DIR" "$PID_DIR"
  start_taskmanager "$(find_flink_home)"
}

main() {
  case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    kill-taskmanager) cmd_kill_taskmanager ;;
    start-taskmanager) cmd_start_taskmanager ;;
    *)
      echo "usage: $0 start|stop|status|kill-taskmanager|start-taskmanager" >&2
      exit 2
      ;;
  esac
}

main "$@"
