#!/usr/bin/env bash
# tests/cluster/cluster.sh up DIR   - start etcd + kube-apiserver-lite on free loopback ports,
#                                     wait for /readyz, write DIR/kubeconfig and print its path
#                                     (the only line on stdout). Builds the server first if needed.
# tests/cluster/cluster.sh down DIR - stop both by the PIDs recorded in DIR (only if they are still ours).
# On a failed start it prints the logs' tail, stops what it started and exits 1.
# Env: READY_TIMEOUT (seconds, default 60); KEEP_DATA=1 keeps DIR/etcd-data between starts;
#      IMAGEBOT_APISERVER_CACHE (build.sh's cache, inherited: a private one keeps a branch's server apart).
set -euo pipefail

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$2"
RUN=$(cd "$2" && pwd)

down() {
  for p in apiserver etcd; do   # apiserver first: it is etcd's client
    f="$RUN/$p.pid"
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    exe=${exe% (deleted)}
    case "$exe" in
      */etcd|*/kube-apiserver-lite)
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && { echo "$p ($pid) ignored SIGTERM; sending SIGKILL" >&2; kill -9 "$pid"; }
        echo "stopped $p ($pid)" >&2 ;;
      *) echo "$p ($pid) not running" >&2 ;;
    esac
    rm -f "$f"
  done
}

up() {
  BIN=$("$HERE/build.sh")/bin
  for p in etcd apiserver; do
    if [ -e "$RUN/$p.pid" ] && kill -0 "$(cat "$RUN/$p.pid")" 2>/dev/null; then
      echo "$p already running in $RUN (pid $(cat "$RUN/$p.pid")); run '$0 down $RUN' first" >&2; exit 1
    fi
  done
  read -r EC EP AP < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
  fail() {
    echo "cluster.sh: $*" >&2
    for l in etcd apiserver; do echo "--- tail $RUN/$l.log" >&2; tail -n 25 "$RUN/$l.log" >&2 || true; done
    down; exit 1
  }
  T0=$(date +%s%N)
  [ -n "${KEEP_DATA:-}" ] || rm -rf "$RUN/etcd-data"
  nohup "$BIN/etcd" --name lite --data-dir "$RUN/etcd-data" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
    --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
    --initial-cluster "lite=http://127.0.0.1:$EP" --log-level warn </dev/null >"$RUN/etcd.log" 2>&1 &
  echo $! >"$RUN/etcd.pid"
  nohup "$BIN/kube-apiserver-lite" --etcd-servers "http://127.0.0.1:$EC" \
    --bind-address 127.0.0.1 --secure-port "$AP" --cert-dir "$RUN/certs" </dev/null >"$RUN/apiserver.log" 2>&1 &
  echo $! >"$RUN/apiserver.pid"
  deadline=$(( $(date +%s) + ${READY_TIMEOUT:-60} ))
  until [ "$(curl -sk --max-time 2 "https://127.0.0.1:$AP/readyz" 2>/dev/null)" = ok ]; do
    kill -0 "$(cat "$RUN/etcd.pid")" 2>/dev/null || fail "etcd exited"
    kill -0 "$(cat "$RUN/apiserver.pid")" 2>/dev/null || fail "kube-apiserver-lite exited"
    [ "$(date +%s)" -lt "$deadline" ] || fail "not ready after ${READY_TIMEOUT:-60}s"
    sleep 0.1
  done
  # The self-signed serving cert doubles as its CA; 127.0.0.1 is among its SANs.
  cat >"$RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: lite
  cluster:
    server: https://127.0.0.1:$AP
    certificate-authority: $RUN/certs/apiserver.crt
users:
- name: lite
  user: {token: anonymous}
contexts:
- name: lite
  context: {cluster: lite, user: lite, namespace: default}
current-context: lite
KC
  echo "ready in $(( ($(date +%s%N) - T0) / 1000000 )) ms: apiserver https://127.0.0.1:$AP, etcd http://127.0.0.1:$EC" >&2
  echo "$RUN/kubeconfig"
}

case "$1" in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
