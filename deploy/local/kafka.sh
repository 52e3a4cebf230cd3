#!/usr/bin/env bash
# Local Apache Kafka (KRaft, no ZooKeeper) for development and tests.
#
# Jars come from Maven Central through mvn (no tarball download); they are
# cached under <repo>/.cache/kafka/<version>/libs, runtime state lives under
# <repo>/.data/kafka/<single|cluster>/.
#
# Ports are checked by talking to them, not by pid files. `start single` reuses
# a Kafka broker that already answers an ApiVersions request on the single
# port, whoever started it, and `stop` leaves such a broker running. When a
# default port is held by anything else, this checkout's nodes start on the
# next free ports (default + 10, + 20, ...); the ports chosen are remembered in
# .data/kafka/<name>/ports and every command follows them. The cluster is
# never reused (fault tests kill its nodes), only relocated.
#
# Usage: deploy/local/kafka.sh <command> [args]
#   fetch                      resolve Kafka + runtime deps into the cache
#   start   [single|cluster]   start (formats storage on first use), wait ready
#   stop    [single|cluster]   SIGTERM, wait up to KAFKA_STOP_TIMEOUT (20 s), SIGKILL
#   status  [single|cluster]   one line per node; exit 0 if all up, 3 otherwise
#   reset   [single|cluster]   stop and delete the data dir
#   kill-node N                SIGKILL cluster node N (1..3)
#   start-node N               start cluster node N again and wait until ready
#   bootstrap [single|cluster] print the bootstrap servers in use (reused or own)
#   tool NAME|CLASS [ARGS...]  run a Kafka CLI tool from the cached jars, e.g.
#                              tool topics --bootstrap-server 127.0.0.1:9092 --list
#                              (NAME: topics, console-producer, console-consumer,
#                              consumer-groups, metadata-quorum, storage)
#   version                    print the Kafka version used
#
# Environment: JAVA (default java), KAFKA_VERSION (pin a version),
#   KAFKA_HEAP_OPTS (default "-Xms256m -Xmx512m"), KAFKA_JVM_OPTS (extra),
#   KAFKA_START_TIMEOUT (90), KAFKA_STOP_TIMEOUT (20), MVN (default mvn),
#   MVN_ARGS (extra mvn args, e.g. -Dmaven.repo.local=...),
#   KAFKA_CACHE_DIR (jar cache, default <repo>/.cache/kafka),
#   KAFKA_SINGLE_PORT (9092), KAFKA_SINGLE_CONTROLLER_PORT (9093),
#   KAFKA_CLUSTER_PORT (19092), KAFKA_CLUSTER_CONTROLLER_PORT (19192): default
#   ports; cluster nodes 2 and 3 use the next two ports after these.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_ROOT="${KAFKA_CACHE_DIR:-$REPO_ROOT/.cache/kafka}"
DATA_ROOT="$REPO_ROOT/.data/kafka"
# Machine-wide: checkouts choose and bind their ports one at a time.
PORTS_LOCK=/tmp/baton-kafka-ports.lock
PORT_STEP=10
PORT_TRIES=100

JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"
# Tried in order when KAFKA_VERSION is not set.
KAFKA_CANDIDATES=(4.1.1 4.1.0 4.0.0)
LOG4J_VERSION="2.24.3"
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-20}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

die() { echo "kafka.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- fetch ----

libs_dir() { echo "$CACHE_ROOT/$1/libs"; }
libs_complete() { [[ -f "$(libs_dir "$1")/.complete" ]]; }

# Version to run: KAFKA_VERSION, else first candidate already cached, else "".
cached_version() {
  if [[ -n "${KAFKA_VERSION:-}" ]]; then
    libs_complete "$KAFKA_VERSION" && echo "$KAFKA_VERSION"
    return 0
  fi
  local v
  for v in "${KAFKA_CANDIDATES[@]}"; do
    if libs_complete "$v"; then echo "$v"; return 0; fi
  done
}

jar_has_class() { LC_ALL=C grep -qaF "$2" "$1" 2>/dev/null; }

# Fetch one version into the cache; returns non-zero (log kept) on failure.
fetch_version() {
  local v="$1" dest tmp log
  dest="$(libs_dir "$v")"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/kafka-fetch.XXXXXX")"
  log="$tmp/mvn.log"
  cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.deploy</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$v</version></dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$v</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-storage</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-metadata</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-raft</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server-common</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-clients</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <!-- Kafka 4.x uses slf4j-api 1.7.x: this is the log4j2 binding for it. -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp"
  # shellcheck disable=SC2086
  if ! "$MVN" -B -q -U -Dstyle.color=never -f "$tmp/pom.xml" ${MVN_ARGS:-} "$DEP_PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$dest.tmp" >"$log" 2>&1; then
    echo "kafka.sh: mvn could not resolve Kafka $v:" >&2
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E 'ERROR|Could not' | head -2 >&2 || tail -5 "$log" >&2
    rm -rf "$dest.tmp" "$tmp"
    rmdir "$CACHE_ROOT/$v" 2>/dev/null || true
    return 1
  fi
  rm -rf "$tmp"
  local j missing=()
  for j in kafka_2.13 kafka-clients kafka-server-common kafka-server kafka-storage \
           kafka-metadata kafka-raft kafka-tools kafka-group-coordinator scala-library \
           log4j-api log4j-core log4j-slf4j-impl slf4j-api; do
    compgen -G "$dest.tmp/$j-[0-9]*.jar" >/dev/null || missing+=("$j")
  done
  if ((${#missing[@]})); then
    rm -rf "$dest.tmp"
    die "Kafka $v: resolved jars are incomplete, missing: ${missing[*]}"
  fi
  jar_has_class "$dest.tmp/kafka_2.13-$v.jar" "kafka/Kafka.class" \
    || { rm -rf "$dest.tmp"; die "Kafka $v: kafka.Kafka not found in kafka_2.13-$v.jar"; }
  { rm -rf "$dest" && mv "$dest.tmp" "$dest" && ls "$dest" >"$dest/.complete"; } \
    || die "could not move jars into $dest"
  return 0
}

cmd_fetch() {
  local v t0=$SECONDS
  mkdir -p "$CACHE_ROOT"
  exec 8>"$CACHE_ROOT/.lock"
  flock -w 300 8 || die "timed out waiting for another fetch ($CACHE_ROOT/.lock)"
  v="$(cached_version)"
  if [[ -n "$v" ]]; then
    echo "kafka $v: jars already cached in $(libs_dir "$v")"
    return 0
  fi
  command -v "$MVN" >/dev/null || die "maven ($MVN) not found; install it (apt-get install -y maven)"
  local candidates=("${KAFKA_CANDIDATES[@]}")
  [[ -n "${KAFKA_VERSION:-}" ]] && candidates=("$KAFKA_VERSION")
  for v in "${candidates[@]}"; do
    if fetch_version "$v"; then
      echo "kafka $v: fetched $(find "$(libs_dir "$v")" -name '*.jar' | wc -l) jars into $(libs_dir "$v") in $((SECONDS - t0))s"
      return 0
    fi
  done
  die "could not fetch any Kafka version of: ${candidates[*]}"
}

ensure_libs() {
  KV="$(cached_version)"
  if [[ -z "$KV" ]]; then
    cmd_fetch >/dev/null
    KV="$(cached_version)"
  fi
  [[ -n "$KV" ]] || die "no Kafka jars available"
  LIBS="$(libs_dir "$KV")"
  STORAGE_CLASS=""
  local jar
  for jar in "$LIBS"/kafka_2.13-*.jar "$LIBS"/kafka-tools-[0-9]*.jar "$LIBS"/kafka-storage-[0-9]*.jar; do
    if jar_has_class "$jar" "kafka/tools/StorageTool.class"; then STORAGE_CLASS=kafka.tools.StorageTool; break; fi
    if jar_has_class "$jar" "org/apache/kafka/tools/StorageTool.class"; then STORAGE_CLASS=org.apache.kafka.tools.StorageTool; break; fi
  done
  [[ -n "$STORAGE_CLASS" ]] || die "StorageTool class not found in $LIBS"
}

check_java() {
  command -v "$JAVA" >/dev/null || die "java not found (JAVA=$JAVA)"
  local ver
  ver="$("$JAVA" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -1)"
  [[ -n "$ver" && "$ver" -ge 17 ]] || die "Kafka 4 needs Java >= 17 (JAVA=$JAVA reports '${ver:-?}')"
}

# ------------------------------------------------------------ topology ----

# Sets NAME, NODES (ids), and per-node port helpers for a deployment.
set_deployment() {
  NAME="${1:-single}"
  case "$NAME" in
    single)
      NODES=(1)
      DEFAULT_BROKER="${KAFKA_SINGLE_PORT:-9092}"
      DEFAULT_CONTROLLER="${KAFKA_SINGLE_CONTROLLER_PORT:-9093}"
      ;;
    cluster)
      NODES=(1 2 3)
      DEFAULT_BROKER="${KAFKA_CLUSTER_PORT:-19092}"
      DEFAULT_CONTROLLER="${KAFKA_CLUSTER_CONTROLLER_PORT:-19192}"
      ;;
    *) die "unknown deployment '$NAME' (expected single or cluster)" ;;
  esac
  local p
  for p in "$DEFAULT_BROKER" "$DEFAULT_CONTROLLER"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p + ${#NODES[@]} > 65536)); then die "invalid $NAME port '$p'"; fi
  done
  local gap=$((DEFAULT_BROKER - DEFAULT_CONTROLLER))
  ((gap >= ${#NODES[@]} || -gap >= ${#NODES[@]})) \
    || die "$NAME broker ports ($DEFAULT_BROKER..) and controller ports ($DEFAULT_CONTROLLER..) overlap"
  DDIR="$DATA_ROOT/$NAME"
  PORTS_FILE="$DDIR/ports"
  REUSED_FILE="$DDIR/reused"
  load_ports
}

# BROKER_BASE/CONTROLLER_BASE: the ports remembered by the last start, else the defaults.
load_ports() {
  BROKER_BASE="$DEFAULT_BROKER"; CONTROLLER_BASE="$DEFAULT_CONTROLLER"
  [[ -f "$PORTS_FILE" ]] || return 0
  local key val
  while IFS='=' read -r key val; do
    [[ "$val" =~ ^[0-9]+$ ]] || continue
    case "$key" in
      broker) BROKER_BASE="$val" ;;
      controller) CONTROLLER_BASE="$val" ;;
    esac
  done <"$PORTS_FILE"
}

save_ports() {
  mkdir -p "$DDIR"
  printf '# ports of this checkout'"'"'s %s nodes, chosen by deploy/local/kafka.sh start\nbroker=%s\ncontroller=%s\n' \
    "$NAME" "$BROKER_BASE" "$CONTROLLER_BASE" >"$PORTS_FILE.tmp"
  mv "$PORTS_FILE.tmp" "$PORTS_FILE"
}

broker_port() { echo $((BROKER_BASE + $1 - 1)); }
controller_port() { echo $((CONTROLLER_BASE + $1 - 1)); }

bootstrap_servers() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$(broker_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

quorum_voters() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

node_dir() { echo "$DDIR/node$1"; }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }

lock_deployment() {
  mkdir -p "$DATA_ROOT"
  exec 9>"$DATA_ROOT/.$NAME.lock"
  flock -w 200 9 || die "timed out waiting for another kafka.sh on '$NAME'"
}

# Prints the pid if node N runs (pid file valid and cmdline is our broker).
node_pid() {
  local pf pid
  pf="$(pid_file "$1")"
  [[ -f "$pf" ]] || return 1
  pid="$(cat "$pf" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F "$(node_dir "$1")/server.properties" >/dev/null || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True if a Kafka broker answers on port $1: sends an ApiVersions v0 request
# (api_key 18, a random correlation id, client id "kafka.sh") and expects a
# response with the same correlation id and error_code 0.
kafka_answers() {
  local corr req out
  corr="$(printf '%08x' $(((RANDOM << 16 | RANDOM) & 0x7fffffff)))"
  # size 18 | api_key 18 | api_version 0 | correlation id | client id (int16 length + bytes)
  req='\x00\x00\x00\x12\x00\x12\x00\x00'
  req+="\\x${corr:0:2}\\x${corr:2:2}\\x${corr:4:2}\\x${corr:6:2}"
  req+='\x00\x08kafka.sh'
  # response v0: size (4 bytes) | correlation id (4) | error_code (2) | ...
  # shellcheck disable=SC2016
  out="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "$2" >&3 && head -c 10 <&3 | od -An -v -tx1' \
         _ "$1" "$req" 2>/dev/null | tr -d ' \n')" || return 1
  [[ ${#out} -eq 20 && "${out:8:8}" == "$corr" && "${out:16:4}" == 0000 ]]
}

# True if every node's broker and controller port is free with bases $1 and $2.
ports_free() {
  local n
  for n in "${NODES[@]}"; do
    port_open $(($1 + n - 1)) && return 1
    port_open $(($2 + n - 1)) && return 1
  done
  return 0
}

# Sets BROKER_BASE/CONTROLLER_BASE to free ports: the defaults, else the
# remembered ones, else the defaults shifted up by PORT_STEP at a time.
choose_ports() {
  local cands=("$DEFAULT_BROKER $DEFAULT_CONTROLLER" "$BROKER_BASE $CONTROLLER_BASE") k b c
  for ((k = 1; k <= PORT_TRIES; k++)); do
    cands+=("$((DEFAULT_BROKER + k * PORT_STEP)) $((DEFAULT_CONTROLLER + k * PORT_STEP))")
  done
  for k in "${cands[@]}"; do
    read -r b c <<<"$k"
    ((b + ${#NODES[@]} <= 65536 && c + ${#NODES[@]} <= 65536)) || continue
    if ports_free "$b" "$c"; then
      BROKER_BASE="$b"; CONTROLLER_BASE="$c"
      return 0
    fi
  done
  die "$NAME: no free ports found from $DEFAULT_BROKER/$DEFAULT_CONTROLLER upwards"
}

lock_ports() {
  if [[ ! -e "$PORTS_LOCK" ]]; then
    { : >>"$PORTS_LOCK" && chmod 666 "$PORTS_LOCK"; } 2>/dev/null || true
  fi
  [[ -r "$PORTS_LOCK" ]] || return 0
  exec 7<"$PORTS_LOCK"
  flock -w "$((START_TIMEOUT + 300))" 7 || die "timed out waiting for another kafka.sh to bind its ports ($PORTS_LOCK)"
}

gen_cluster_id() {
  # Same format as org.apache.kafka.common.Uuid: 16 random bytes, url-safe base64, no padding.
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && ${#id} -eq 22 ]] && break
  done
  echo "$id"
}

write_log4j() {
  cat >"$DDIR/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="${sys:kafka.logs.dir}/server.log"
                 filePattern="${sys:kafka.logs.dir}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="50 MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients.NetworkClient" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
EOF
}

write_props() {
  local n="$1" nd bp cp
  nd="$(node_dir "$n")"; bp="$(broker_port "$n")"; cp="$(controller_port "$n")"
  mkdir -p "$nd/data" "$nd/logs"
  {
    echo "# generated by deploy/local/kafka.sh ($NAME) - edits are overwritten on start"
    echo "process.roles=broker,controller"
    echo "node.id=$n"
    echo "controller.quorum.voters=$(quorum_voters)"
    echo "listeners=PLAINTEXT://127.0.0.1:$bp,CONTROLLER://127.0.0.1:$cp"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$bp"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "controller.listener.names=CONTROLLER"
    echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    echo "log.dirs=$nd/data"
    echo "num.partitions=3"
    echo "auto.create.topics.enable=true"
    echo "group.initial.rebalance.delay.ms=0"
    echo "offsets.topic.num.partitions=10"
    echo "transaction.state.log.num.partitions=10"
    echo "log.segment.bytes=16777216"
    echo "log.retention.hours=24"
    echo "log.retention.check.interval.ms=60000"
    echo "num.network.threads=2"
    echo "num.io.threads=4"
    echo "num.recovery.threads.per.data.dir=1"
    echo "broker.heartbeat.interval.ms=1000"
    echo "broker.session.timeout.ms=6000"
    if [[ "$NAME" == single ]]; then
      echo "default.replication.factor=1"
      echo "min.insync.replicas=1"
      echo "offsets.topic.replication.factor=1"
      echo "transaction.state.log.replication.factor=1"
      echo "transaction.state.log.min.isr=1"
      echo "share.coordinator.state.topic.replication.factor=1"
      echo "share.coordinator.state.topic.min.isr=1"
    else
      echo "default.replication.factor=3"
      echo "min.insync.replicas=2"
      echo "offsets.topic.replication.factor=3"
      echo "transaction.state.log.replication.factor=3"
      echo "transaction.state.log.min.isr=2"
      echo "share.coordinator.state.topic.replication.factor=3"
      echo "share.coordinator.state.topic.min.isr=2"
      echo "unclean.leader.election.enable=false"
    fi
  } >"$nd/server.properties"
}

java_cmd() {
  # shellcheck disable=SC2206
  JCMD=("$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$DDIR/log4j2.xml"
        -Dkafka.logs.dir="$(node_dir "$1")/logs" ${KAFKA_JVM_OPTS:-} -cp "$LIBS/*")
}

format_node() {
  local n="$1" nd out
  nd="$(node_dir "$n")"
  [[ -f "$nd/data/meta.properties" ]] && return 0
  java_cmd "$n"
  if ! out="$("${JCMD[@]}" "$STORAGE_CLASS" format -t "$(cat "$DDIR/cluster.id")" \
              -c "$nd/server.properties" 2>&1)"; then
    echo "$out" >&2
    return 1
  fi
}

launch_node() {
  local n="$1" nd
  nd="$(node_dir "$n")"
  # remember where this start begins in the log, to wait for *this* start's "started" line
  wc -c <"$nd/logs/server.log" 2>/dev/null >"$nd/.log-offset" || echo 0 >"$nd/.log-offset"
  java_cmd "$n"
  local cmd q
  cmd="echo \$\$ > $(printf %q "$(pid_file "$n")"); exec"
  for q in "${JCMD[@]}" kafka.Kafka "$nd/server.properties"; do cmd+=" $(printf %q "$q")"; done
  # close the lock fds (7, 8, 9) so the broker does not hold them
  setsid nohup bash -c "$cmd" >"$nd/kafka.out" 2>&1 </dev/null 7>&- 8>&- 9>&- &
  for _ in $(seq 1 50); do [[ -s "$(pid_file "$n")" ]] && break; sleep 0.1; done
}

# Byte offset in server.log where the current start began (0 if the log rolled since).
log_offset() {
  local nd="$1" off size
  off="$(cat "$nd/.log-offset" 2>/dev/null || echo 0)"
  [[ "$off" =~ ^[0-9]+$ ]] || off=0
  size="$(wc -c <"$nd/logs/server.log" 2>/dev/null || echo 0)"
  ((size >= off)) || off=0
  echo "$off"
}

node_log_tail() {
  local nd off; nd="$(node_dir "$1")"
  off="$(log_offset "$nd")"
  echo "---- $NAME node $1: last lines of $nd/logs/server.log (this start) ----" >&2
  tail -c +"$((off + 1))" "$nd/logs/server.log" 2>/dev/null | tail -n 30 >&2 || true
  if [[ -s "$nd/kafka.out" ]]; then
    echo "---- $nd/kafka.out ----" >&2
    tail -n 20 "$nd/kafka.out" >&2
  fi
}

node_started() {
  local n="$1" nd off
  nd="$(node_dir "$n")"
  [[ -f "$nd/logs/server.log" ]] || return 1
  off="$(log_offset "$nd")"
  # grep reads to the end (no -q): an early exit would SIGPIPE tail and, under pipefail, fail the check.
  tail -c +"$((off + 1))" "$nd/logs/server.log" | grep -F "Kafka Server started" >/dev/null || return 1
  port_open "$(broker_port "$n")"
}

# Stop the nodes this invocation launched, so a failed start leaves nothing behind.
abort_start() {
  local n p pids=()
  for n in "$@"; do
    if p="$(node_pid "$n")"; then pids+=("$p"); fi
  done
  stop_pids "${pids[@]}" 2>/dev/null
  for n in "$@"; do rm -f "$(pid_file "$n")"; done
}

# Wait until all given nodes are started; fails with the log tail.
wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) n pending
  while :; do
    pending=()
    for n in "$@"; do
      if ! node_pid "$n" >/dev/null; then
        node_log_tail "$n"
        abort_start "$@"
        die "$NAME node $n exited during startup"
      fi
      node_started "$n" || pending+=("$n")
    done
    ((${#pending[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      for n in "${pending[@]}"; do node_log_tail "$n"; done
      abort_start "$@"
      die "$NAME node(s) ${pending[*]} not ready after ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
}

prepare() {
  check_java
  ensure_libs
  mkdir -p "$DDIR"
  [[ -s "$DDIR/cluster.id" ]] || gen_cluster_id >"$DDIR/cluster.id"
  write_log4j
  local n pids=() fail=0
  for n in "${NODES[@]}"; do write_props "$n"; done
  for n in "${NODES[@]}"; do
    if [[ ! -f "$(node_dir "$n")/data/meta.properties" ]]; then
      format_node "$n" & pids+=($!)
    fi
  done
  for n in "${pids[@]}"; do wait "$n" || fail=1; done
  ((fail == 0)) || die "kafka-storage format failed for '$NAME'"
}

start_nodes() {
  local n todo=() bp cp
  for n in "$@"; do
    node_pid "$n" >/dev/null && continue
    bp="$(broker_port "$n")"; cp="$(controller_port "$n")"
    if port_open "$bp" || port_open "$cp"; then
      die "$NAME node $n: port $bp or $cp is already in use by another process" \
          "(stop all $NAME nodes and start again to move to free ports)"
    fi
    todo+=("$n")
  done
  ((${#todo[@]})) || return 0
  for n in "${todo[@]}"; do launch_node "$n"; done
  wait_ready "${todo[@]}"
}

# ------------------------------------------------------------ commands ----

own_nodes_running() {
  local n
  for n in "${NODES[@]}"; do node_pid "$n" >/dev/null && return 0; done
  return 1
}

cmd_start() {
  set_deployment "${1:-single}"
  lock_deployment
  local t0=$SECONDS note=""
  # Nodes of ours still run: keep their ports. Otherwise look at who holds the ports.
  if ! own_nodes_running; then
    lock_ports
    if [[ "$NAME" == single ]] && kafka_answers "$DEFAULT_BROKER"; then
      mkdir -p "$DDIR"
      echo "127.0.0.1:$DEFAULT_BROKER" >"$REUSED_FILE"
      echo "kafka single: reusing the broker already serving 127.0.0.1:$DEFAULT_BROKER"
      return 0
    fi
    choose_ports
    rm -f "$REUSED_FILE"
    save_ports
    if ((BROKER_BASE != DEFAULT_BROKER || CONTROLLER_BASE != DEFAULT_CONTROLLER)); then
      if [[ "$NAME" == single ]]; then
        note=" (default ports $DEFAULT_BROKER/$DEFAULT_CONTROLLER in use by something else)"
      else
        note=" (default ports $DEFAULT_BROKER-$((DEFAULT_BROKER + 2))/$DEFAULT_CONTROLLER-$((DEFAULT_CONTROLLER + 2)) in use by something else)"
      fi
    fi
  fi
  prepare
  start_nodes "${NODES[@]}"
  echo "kafka $NAME ($KV): up at $(bootstrap_servers)$note ($((SECONDS - t0))s)"
}

stop_pids() {
  local deadline=$((SECONDS + STOP_TIMEOUT)) p alive
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  while :; do
    alive=()
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    ((${#alive[@]})) || return 0
    if ((SECONDS >= deadline)); then
      echo "kafka.sh: pid(s) ${alive[*]} still running after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
      kill -KILL "${alive[@]}" 2>/dev/null || true
      sleep 0.5
      return 0
    fi
    sleep 0.2
  done
}

cmd_stop() {
  set_deployment "${1:-single}"
  lock_deployment
  local n p pids=()
  for n in "${NODES[@]}"; do
    if p="$(node_pid "$n")"; then pids+=("$p"); fi
  done
  stop_pids "${pids[@]}"
  for n in "${NODES[@]}"; do rm -f "$(pid_file "$n")"; done
  if ((${#pids[@]})); then
    echo "kafka $NAME: stopped"
  elif [[ -f "$REUSED_FILE" ]]; then
    rm -f "$REUSED_FILE"
    echo "kafka $NAME: not ours (reused), left running"
  else
    echo "kafka $NAME: not running"
  fi
}

cmd_status() {
  set_deployment "${1:-single}"
  local n p up=0 addr
  if [[ -s "$REUSED_FILE" ]] && ! own_nodes_running; then
    addr="$(cat "$REUSED_FILE")"
    if kafka_answers "${addr##*:}"; then
      echo "kafka $NAME: reusing the broker at $addr (not ours)"; return 0
    fi
    echo "kafka $NAME: reused broker at $addr does not answer"; exit 3
  fi
  for n in "${NODES[@]}"; do
    if p="$(node_pid "$n")"; then
      if port_open "$(broker_port "$n")"; then
        echo "kafka $NAME node $n: running (pid $p) 127.0.0.1:$(broker_port "$n")"; up=$((up + 1))
      else
        echo "kafka $NAME node $n: starting (pid $p), 127.0.0.1:$(broker_port "$n") not listening yet"
      fi
    else
      echo "kafka $NAME node $n: stopped"
    fi
  done
  ((up == ${#NODES[@]})) || exit 3
}

cmd_reset() {
  set_deployment "${1:-single}"
  cmd_stop "$NAME" >/dev/null
  rm -rf "$DDIR"
  echo "kafka $NAME: reset (data removed)"
}

node_arg() {
  [[ "${1:-}" =~ ^[123]$ ]] || die "node must be 1, 2 or 3 (got '${1:-}')"
}

cmd_kill_node() {
  node_arg "${1:-}"
  set_deployment cluster
  lock_deployment
  local p
  if p="$(node_pid "$1")"; then
    kill -KILL "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$(pid_file "$1")"
    echo "kafka cluster node $1: killed (pid $p)"
  else
    echo "kafka cluster node $1: not running"
  fi
}

cmd_start_node() {
  node_arg "${1:-}"
  set_deployment cluster
  lock_deployment
  local t0=$SECONDS
  prepare
  start_nodes "$1"
  echo "kafka cluster node $1: up at 127.0.0.1:$(broker_port "$1") ($((SECONDS - t0))s)"
}

cmd_tool() {
  local cls="${1:-}"
  [[ -n "$cls" ]] || die "usage: kafka.sh tool NAME|CLASS [ARGS...]"
  shift
  check_java
  ensure_libs
  case "$cls" in
    topics) cls=org.apache.kafka.tools.TopicCommand ;;
    console-producer) cls=org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    metadata-quorum) cls=org.apache.kafka.tools.MetadataQuorumCommand ;;
    storage) cls="$STORAGE_CLASS" ;;
  esac
  local cfg="$CACHE_ROOT/log4j2-tools.xml"
  if [[ ! -f "$cfg" ]]; then
    cat >"$cfg.$$" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="err" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="err"/></Root></Loggers>
</Configuration>
EOF
    mv "$cfg.$$" "$cfg"
  fi
  exec 8>&- 9>&-
  exec "$JAVA" -Xmx256m -XX:+UseSerialGC -Djava.awt.headless=true -Dlog4j2.configurationFile="$cfg" \
    -cp "$LIBS/*" "$cls" "$@"
}

cmd_bootstrap() {
  set_deployment "${1:-single}"
  if [[ -s "$REUSED_FILE" ]] && ! own_nodes_running; then cat "$REUSED_FILE"; else bootstrap_servers; fi
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    reset) cmd_reset "$@" ;;
    kill-node) cmd_kill_node "$@" ;;
    start-node) cmd_start_node "$@" ;;
    tool) cmd_tool "$@" ;;
    bootstrap) cmd_bootstrap "$@" ;;
    version) v="$(cached_version)"; echo "${v:-${KAFKA_VERSION:-${KAFKA_CANDIDATES[0]}}}" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) echo "kafka.sh: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
