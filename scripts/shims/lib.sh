# Common state and behaviour of the sandbox node's shims. Sourced by each shim.
# The sandbox is  $SB/root (the node's /) and $SB/ctl (shims, state, log).
# Services, containers, SELinux and the operators' revisions live in $SB/ctl/state.
set -u
SB=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOT=$SB/root
CTL=$SB/ctl
ST=$CTL/state
mkdir -p "$ST/active" "$ST/enabled" "$ST/oc"
CONTAINERS=$ST/containers   # lines: "<name> <id>"
ETCD_SIBLINGS="etcdctl etcd-metrics etcd-readyz etcd-rev"
CP_NAMES="etcd etcd-operator kube-apiserver-operator kube-controller-manager-operator kube-scheduler-operator-container"

# shellcheck source=bootfs.sh
. "$CTL/lib/bootfs.sh"

# Replace FILE with stdin, as etcd keeps the API's objects: whole and on
# disk when the write returns (the VM lane cuts the power; a truncated
# revision file once made the oc shim answer malformed JSON for 20 minutes).
# Empty input (a failed producer) leaves FILE as it was.
put_file() {
  local f=$1 t="$1.tmp.$$"
  cat > "$t" || { rm -f "$t"; return 1; }
  [ -s "$t" ] || { rm -f "$t"; return 1; }
  sync "$t" && mv -f "$t" "$f" && sync "$(dirname "$f")"
}
shim_log() { printf '%s %s\n' "$(date +%s.%N)" "$*" >> "$CTL/calls.log"; }

active() { [ -e "$ST/active/$1" ]; }

new_id() { od -An -N32 -tx1 /dev/urandom | tr -d " \n"; }

# The pid recorded is etcd's only while that process is an etcd: after a
# reboot (the VM lane) the number may name any process of the new boot.
etcd_pid() {
  local p
  p=$(cat "$ST/etcd.pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null \
    && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = etcd ] && echo "$p"
}

# One change of the node's pods and etcd at a time. The VM guest runs two
# node daemons (kubelet, crio) and the tool's shim calls at once; two
# reconciles that both found etcd down started two etcds (the second
# failed to bind, its pid recorded: etcd counted down for good, `oc`
# refused) and restored the snapshot twice (a restore-* dir left in the
# data dir). The lock's fd is closed for etcd, which outlives the call.
state_locked() { ( flock 9 && "$@" ) 9>>"$ST/lock"; }
etcd_stop() { state_locked _etcd_stop; }
etcd_start() { state_locked _etcd_start; }
reconcile() { state_locked _reconcile; }
# The pods are gone (a kubelet or crio stop, `crictl rmp`, `crio wipe`).
pods_gone() { state_locked _pods_gone; }
_pods_gone() { : > "$CONTAINERS"; _etcd_stop; }

_etcd_stop() {
  local pid; pid=$(etcd_pid) || { rm -f "$ST/etcd.pid"; return 0; }
  kill "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$ST/etcd.pid"
}

_etcd_start() {
  etcd_pid >/dev/null && return 0
  # shellcheck source=/dev/null
  . "$ST/ports"
  local certs=$ROOT/etc/kubernetes/static-pod-resources/etcd-certs
  local ca=$certs/configmaps/etcd-serving-ca/ca-bundle.crt
  local crt=$certs/secrets/etcd-all-certs/etcd-peer-sno.crt
  local key=$certs/secrets/etcd-all-certs/etcd-peer-sno.key
  # A clean environment: etcd rejects ETCD_* variables that shadow its flags.
  env -i PATH=/usr/bin:/bin setsid etcd --name sno --data-dir "$ROOT/var/lib/etcd" \
    --listen-client-urls "https://127.0.0.1:$CLIENT_PORT" \
    --advertise-client-urls "https://127.0.0.1:$CLIENT_PORT" \
    --listen-peer-urls "https://127.0.0.1:$PEER_PORT" \
    --initial-advertise-peer-urls "https://127.0.0.1:$PEER_PORT" \
    --initial-cluster "sno=https://127.0.0.1:$PEER_PORT" \
    --cert-file "$crt" --key-file "$key" --trusted-ca-file "$ca" --client-cert-auth \
    --peer-cert-file "$crt" --peer-key-file "$key" --peer-trusted-ca-file "$ca" --peer-client-cert-auth \
    --listen-metrics-urls "http://127.0.0.1:$METRICS_PORT" \
    </dev/null >>"$CTL/etcd.log" 2>&1 9>&- &
  echo $! > "$ST/etcd.pid"
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$METRICS_PORT/health" >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$ST/etcd.pid")" 2>/dev/null || { echo "sandbox: etcd exited, see $CTL/etcd.log" >&2; return 1; }
    sleep 0.1
  done
  echo "sandbox: etcd did not become healthy, see $CTL/etcd.log" >&2
  return 1
}

has_container() { grep -q "^$1 " "$CONTAINERS" 2>/dev/null; }
add_container() { echo "$1 $(new_id)" >> "$CONTAINERS"; }
del_container() { [ -f "$CONTAINERS" ] && sed -i "/^$1 /d" "$CONTAINERS"; return 0; }

# The kubelet's and CRI-O's job, reduced to what recovery depends on: with both
# running, the control-plane containers run, etcd only while its static-pod
# manifest is in place and its data dir exists. The etcd process lives exactly
# as long as its container.
# The restore-etcd static pod (its manifest carries the restore pod's uid, as
# openshift/cluster-etcd-operator bindata/etcd/restore-pod.yaml): with
# /var/lib/etcd empty and /var/lib/etcd-backup/snapshot.db present it restores
# the snapshot into /var/lib/etcd (then removes snapshot.db) and runs etcd; with
# /var/lib/etcd not empty it refuses, as the pod does, and etcd stays down.
restore_pod() {
  local m=$ROOT/etc/kubernetes/manifests/etcd-pod.yaml d=$ROOT/var/lib/etcd snap=$ROOT/var/lib/etcd-backup/snapshot.db
  grep -q 'uid: 55aed6ab-58f5-4ae2-bf1c-54be36669b8a' "$m" 2>/dev/null || return 0
  [ -d "$d/member" ] && return 0
  if [ -n "$(ls -A "$d" 2>/dev/null)" ] || [ ! -f "$snap" ]; then return 0; fi
  # shellcheck source=/dev/null
  . "$ST/ports"
  local u; u=$(new_id | head -c 8)
  ETCDCTL_API=3 etcdctl snapshot restore "$snap" --name sno \
    --initial-cluster "sno=https://127.0.0.1:$PEER_PORT" \
    --initial-cluster-token "openshift-etcd-$u" \
    --initial-advertise-peer-urls "https://127.0.0.1:$PEER_PORT" \
    --data-dir "$d/restore-$u" >>"$CTL/etcd.log" 2>&1 || return 0
  mv "$d/restore-$u"/* "$d/" && rmdir "$d/restore-$u" && rm -f "$snap"
}

_reconcile() {
  if active kubelet.service && active crio.service; then
    restore_pod
    local n
    for n in $CP_NAMES; do
      if [ "$n" = etcd ]; then
        # The etcd pod's five containers (cluster-etcd-operator
        # bindata/etcd/pod.yaml; cluster-restore.sh waits for all five):
        # etcd's four siblings stop one look after etcd itself.
        if [ -f "$ROOT/etc/kubernetes/manifests/etcd-pod.yaml" ] && [ -d "$ROOT/var/lib/etcd/member" ]; then
          has_container etcd || add_container etcd
          for s in $ETCD_SIBLINGS; do has_container "$s" || add_container "$s"; done
          rm -f "$ST/etcd-pod-stopping"
        elif has_container etcd; then
          del_container etcd; touch "$ST/etcd-pod-stopping"
        elif [ -e "$ST/etcd-pod-stopping" ]; then
          rm -f "$ST/etcd-pod-stopping"
        else
          for s in $ETCD_SIBLINGS; do del_container "$s"; done
        fi
      else
        has_container "$n" || add_container "$n"
      fi
    done
  fi
  if has_container etcd; then _etcd_start; else _etcd_stop; fi
}
