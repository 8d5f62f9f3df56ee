#!/usr/bin/env bash
# Run a single-node Apache Kafka broker (KRaft, broker and controller in one
# JVM) on 127.0.0.1 for local tests and the streaming demo.
#
#   scripts/kafka.sh start            fetch Kafka once, format, start, wait
#   scripts/kafka.sh stop             stop the broker and wait for it to exit
#   scripts/kafka.sh status           exit 0 when the broker is running
#   scripts/kafka.sh topic create NAME [PARTITIONS]
#   scripts/kafka.sh topic list|describe NAME|delete NAME
#   scripts/kafka.sh env              print the bootstrap servers and TLS files
#
# Maven fetches org.apache.kafka:kafka_2.13 and its runtime dependencies into
# .cache/kafka/<version>/libs, so a second start downloads nothing. Logs, data
# and the generated TLS files live in .cache/kafka/run/.
#
# Environment (defaults in brackets):
#   KAFKA_VERSION          Kafka release to fetch [4.1.1]
#   KAFKA_PORT             plaintext listener port [19092]
#   KAFKA_TLS_PORT         TLS listener port [19093]
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port [19094]
#   KAFKA_HEAP_OPTS        JVM heap flags [-Xms256m -Xmx1g]
#   KAFKA_START_TIMEOUT_SEC  how long start waits for readiness [90]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_TLS_PORT=${KAFKA_TLS_PORT:-19093}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19094}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_START_TIMEOUT_SEC=${KAFKA_START_TIMEOUT_SEC:-90}
# Kafka's own distribution ships this log4j SLF4J binding, but the Maven
# artifact kafka_2.13 leaves logging unbound.
LOG4J_VERSION=2.24.3
HOST=127.0.0.1

CACHE="$ROOT/.cache/kafka"
DIST="$CACHE/$KAFKA_VERSION"
LIBS="$DIST/libs"
RUN="$CACHE/run"
TLS="$RUN/tls"
PID_FILE="$RUN/kafka.pid"
CONFIG="$RUN/server.properties"
SERVER_LOG="$RUN/logs/server.out"

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

write_pom() {
  cat >"$DIST/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>vitalwatch.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

# Copy the jars once. Without the .complete marker, the next start retries.
fetch_libs() {
  [[ -f "$LIBS/.complete" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found: install Maven"
  log "fetching Kafka $KAFKA_VERSION and its dependencies with Maven"
  mkdir -p "$DIST"
  rm -rf "$LIBS"
  write_pom
  mvn -B -q -f "$DIST/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS" \
    || die "mvn failed to fetch Kafka $KAFKA_VERSION"
  touch "$LIBS/.complete"
}

# Run a Kafka command-line tool, logging warnings to stderr so that it never
# writes into the broker's log file.
kafka_java() {
  java -Xmx256m -Dlog4j2.configurationFile="$RUN/log4j2-tools.properties" \
    -cp "$LIBS/*" "$@"
}

# A self-signed CA and a broker key pair for 127.0.0.1 and localhost, signed
# by the CA and packed as a PKCS12 keystore. They are kept across restarts so
# that clients keep trusting ca.crt, and made anew when missing or when the
# broker certificate expires within a day.
make_tls() {
  if [[ -f "$TLS/broker.p12" && -f "$TLS/ca.crt" ]] \
    && openssl x509 -checkend 86400 -noout -in "$TLS/broker.crt" >/dev/null; then
    return 0
  fi
  command -v openssl >/dev/null || die "openssl not found"
  log "generating a test CA and broker keystore in $TLS"
  mkdir -p "$TLS"
  chmod 700 "$TLS"
  openssl rand -hex 16 >"$TLS/keystore.password"
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -sha256 \
    -subj "/CN=vitalwatch test CA" -keyout "$TLS/ca.key" -out "$TLS/ca.crt" \
    2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$TLS/broker.key" -out "$TLS/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$TLS/broker.ext"
  openssl x509 -req -in "$TLS/broker.csr" -CA "$TLS/ca.crt" \
    -CAkey "$TLS/ca.key" -CAcreateserial -days 825 -sha256 \
    -extfile "$TLS/broker.ext" -out "$TLS/broker.crt" 2>/dev/null
  openssl pkcs12 -export -name broker -inkey "$TLS/broker.key" \
    -in "$TLS/broker.crt" -certfile "$TLS/ca.crt" -out "$TLS/broker.p12" \
    -passout "file:$TLS/keystore.password"
}

write_config() {
  local password
  password=$(cat "$TLS/keystore.password")
  mkdir -p "$RUN/logs" "$RUN/data"
  cat >"$CONFIG" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SSL://$HOST:$KAFKA_TLS_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SSL://$HOST:$KAFKA_TLS_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$RUN/data
num.partitions=1
auto.create.topics.enable=false
# One node, so every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Tests start consumers right away, so skip the rebalance delay.
group.initial.rebalance.delay.ms=0
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$password
ssl.client.auth=none
EOF
  chmod 600 "$CONFIG"
  cat >"$RUN/log4j2.properties" <<'EOF'
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=${sys:kafka.logs.dir}/kafka.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.state.name=state.change.logger
logger.state.level=WARN
EOF
  cat >"$RUN/log4j2-tools.properties" <<'EOF'
rootLogger.level=WARN
rootLogger.appenderRef.stderr.ref=stderr
appender.stderr.type=Console
appender.stderr.name=stderr
appender.stderr.target=SYSTEM_ERR
appender.stderr.layout.type=PatternLayout
appender.stderr.layout.pattern=%p %m (%c)%n
EOF
}

format_storage() {
  [[ -f "$RUN/data/meta.properties" ]] && return 0
  local cluster_id
  cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid)
  log "formatting storage for cluster $cluster_id"
  kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" \
    >>"$RUN/logs/format.out" 2>&1 \
    || die "storage format failed, see $RUN/logs/format.out"
}

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(cat "$PID_FILE")
  # The pid may have been reused by an unrelated process after a reboot.
  if [[ -r "/proc/$pid/cmdline" ]] \
    && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $CONFIG"; then
    echo "$pid"
    return 0
  fi
  return 1
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

broker_ready() {
  grep -q "Kafka Server started" "$RUN/logs/kafka.log" 2>/dev/null \
    && port_open "$KAFKA_PORT" && port_open "$KAFKA_TLS_PORT"
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT_SEC))
  until broker_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$SERVER_LOG" "$RUN/logs/kafka.log" >&2 || true
      rm -f "$PID_FILE"
      die "broker exited during start-up, see $RUN/logs/"
    fi
    if ((SECONDS > deadline)); then
      die "broker not ready after ${KAFKA_START_TIMEOUT_SEC}s, see $RUN/logs/"
    fi
    sleep 0.2
  done
}

cmd_start() {
  local pid
  if pid=$(running_pid); then
    wait_ready "$pid"
    log "already running (pid $pid) on $HOST:$KAFKA_PORT"
    return 0
  fi
  rm -f "$PID_FILE"
  for port in "$KAFKA_PORT" "$KAFKA_TLS_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_open "$port" && die "port $port is in use by another process"
  done
  command -v java >/dev/null || die "java not found: install a JDK 17"
  fetch_libs
  make_tls
  write_config
  format_storage
  # Truncate the log so that the readiness check matches this run's start line.
  : >"$RUN/logs/kafka.log"
  nohup java $KAFKA_HEAP_OPTS -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    -Dkafka.logs.dir="$RUN/logs" \
    -cp "$LIBS/*" kafka.Kafka "$CONFIG" >"$SERVER_LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"
  wait_ready "$pid"
  log "started (pid $pid): plaintext $HOST:$KAFKA_PORT, TLS $HOST:$KAFKA_TLS_PORT"
}

cmd_stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  kill -TERM "$pid"
  # A controlled shutdown of one KRaft node takes a few seconds.
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker did not exit within 30s of SIGTERM, sending SIGKILL"
    kill -KILL "$pid"
  fi
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if pid=$(running_pid) && broker_ready; then
    log "running (pid $pid): plaintext $HOST:$KAFKA_PORT, TLS $HOST:$KAFKA_TLS_PORT"
    return 0
  fi
  log "not running"
  return 1
}

cmd_topic() {
  running_pid >/dev/null || die "broker not running: run '$0 start' first"
  local action=${1:-} bootstrap="$HOST:$KAFKA_PORT"
  local tool=(kafka_java org.apache.kafka.tools.TopicCommand
    --bootstrap-server "$bootstrap")
  case "$action" in
    create)
      [[ -n "${2:-}" ]] || die "usage: $0 topic create NAME [PARTITIONS]"
      "${tool[@]}" --create --if-not-exists --topic "$2" \
        --partitions "${3:-1}" --replication-factor 1 ;;
    list) "${tool[@]}" --list ;;
    describe) "${tool[@]}" --describe ${2:+--topic "$2"} ;;
    delete)
      [[ -n "${2:-}" ]] || die "usage: $0 topic delete NAME"
      "${tool[@]}" --delete --topic "$2" ;;
    *) die "usage: $0 topic create|list|describe|delete [NAME] [PARTITIONS]" ;;
  esac
}

cmd_env() {
  echo "KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT"
  echo "KAFKA_TLS_BOOTSTRAP=$HOST:$KAFKA_TLS_PORT"
  echo "KAFKA_CA_FILE=$TLS/ca.crt"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  topic) shift; cmd_topic "$@" ;;
  env) cmd_env ;;
  *) die "usage: $0 start|stop|status|topic|env" ;;
esac
