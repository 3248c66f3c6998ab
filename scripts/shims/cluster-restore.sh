#!/usr/bin/env bash
# Stand-in for the node's /usr/local/bin/cluster-restore.sh, installed into the
# sandbox node by `scripts/sandbox.sh etcd-scripts DIR` (and the rhcos profile).
# Copied from openshift/cluster-etcd-operator bindata/etcd/cluster-restore.sh
# and etcd-common-tools: same argument (the backup dir), same refusals and exit
# codes (not root -> exit 1; etcd.env or etcd-common-tools missing -> exit 1;
# no argument or not a directory -> usage, exit 1; no snapshot*.db -> exit 1;
# a static pod manifest missing from the tarball -> exit 1), same effects:
# the four static pod manifests moved to /home/core/assets/manifests-stopped,
# wait until the static pod containers are gone (crictl), /var/lib/etcd/member
# moved to /var/lib/etcd-backup/ (a previous one removed), the tarball's
# static-pod-resources extracted under /etc/kubernetes, the snapshot copied to
# /var/lib/etcd-backup/snapshot.db, the restore-etcd pod manifest installed as
# etcd-pod.yaml and the other three manifests taken from the tarball.
# The sandbox's kubelet (scripts/shims/lib.sh reconcile) then runs the
# restore pod: it restores the snapshot into /var/lib/etcd and starts etcd.
# Paths are under the node root this file sits in. SANDBOX_SCRIPT_NOISE bytes
# (default 200000) of progress go to stdout and stderr, as the real one's
# waiting dots and `tar -xvf` do on a slow node.
set -o errexit
set -o pipefail
set -o errtrace
R=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$R" = / ] && R=

if [[ $EUID -ne 0 ]]; then
  echo "This script must be run as root"
  exit 1
fi

function source_required_dependency {
  local path="$1"
  if [ ! -f "${path}" ]; then
    echo "required dependencies not found, please ensure this script is run on a node with a functional etcd static pod"
    exit 1
  fi
  # shellcheck disable=SC1090
  source "${path}"
}
source_required_dependency "$R/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd.env"
source_required_dependency "$R/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd-common-tools"
CONFIG_FILE_DIR=$R$CONFIG_FILE_DIR; MANIFEST_DIR=$R$MANIFEST_DIR; ETCD_DATA_DIR=$R$ETCD_DATA_DIR
ETCD_DATA_DIR_BACKUP=$R$ETCD_DATA_DIR_BACKUP; MANIFEST_STOPPED_DIR=$R$MANIFEST_STOPPED_DIR
RESTORE_ETCD_POD_YAML=$R$RESTORE_ETCD_POD_YAML

function usage() {
  echo 'Path to the directory containing backup files is required: ./cluster-restore.sh <path-to-backup>'
  echo 'The backup directory is expected to be contain two files:'
  echo '        1. etcd snapshot'
  echo '        2. A copy of the Static POD resources at the time of backup'
  exit 1
}

if [ "${1:-}" == "" ] || [ ! -d "$1" ]; then
  usage
fi

noise() {
  local n=${SANDBOX_SCRIPT_NOISE:-200000}
  yes . | tr -d '\n' | head -c "$n" || true
  echo
  yes 'etcd-restore: waiting' | head -c "$n" >&2 || true
}

function restore_static_pods() {
  STATIC_PODS=("$@")
  for POD_FILE_NAME in "${STATIC_PODS[@]}"; do
    # --wildcards: the node's tar (RHEL) matches this pattern as the script
    # expects; upstream GNU tar needs the option for member patterns.
    BACKUP_POD_PATH=$(tar --wildcards -tvf "${BACKUP_FILE}" "*${POD_FILE_NAME}" | awk '{ print $6 }') || true
    if [ -z "${BACKUP_POD_PATH}" ]; then
      echo "${POD_FILE_NAME} does not exist in ${BACKUP_FILE}"
      exit 1
    fi
    echo "starting ${POD_FILE_NAME}"
    tar -xvf "${BACKUP_FILE}" --strip-components=2 -C "${MANIFEST_DIR}"/ "${BACKUP_POD_PATH}"
  done
}

function wait_for_containers_to_stop() {
  CONTAINERS=("$@")
  for NAME in "${CONTAINERS[@]}"; do
    echo "Waiting for container ${NAME} to stop"
    while [[ -n $(crictl ps --label io.kubernetes.container.name="${NAME}" -q 2>/dev/null) ]]; do
      echo -n "."
      sleep 1
    done
    echo "complete"
  done
}

BACKUP_DIR="$1"
# shellcheck disable=SC2012
BACKUP_FILE=$(ls -vd "${BACKUP_DIR}"/static_kuberesources*.tar.gz | tail -1) || true
# shellcheck disable=SC2012
SNAPSHOT_FILE=$(ls -vd "${BACKUP_DIR}"/snapshot*.db | tail -1) || true
STATIC_POD_LIST=("kube-apiserver-pod.yaml" "kube-controller-manager-pod.yaml" "kube-scheduler-pod.yaml")
STATIC_POD_CONTAINERS=("etcd" "etcdctl" "etcd-metrics" "kube-controller-manager" "kube-apiserver" "kube-scheduler")

if [ ! -f "${SNAPSHOT_FILE}" ]; then
  echo "etcd snapshot ${SNAPSHOT_FILE} does not exist"
  exit 1
fi

if [ ! -d "$MANIFEST_STOPPED_DIR" ]; then
  mkdir -p "$MANIFEST_STOPPED_DIR"
fi

for POD_FILE_NAME in "${STATIC_POD_LIST[@]}" etcd-pod.yaml; do
  echo "...stopping ${POD_FILE_NAME}"
  [ ! -f "${MANIFEST_DIR}/${POD_FILE_NAME}" ] && continue
  mv "${MANIFEST_DIR}/${POD_FILE_NAME}" "${MANIFEST_STOPPED_DIR}"
done

wait_for_containers_to_stop "${STATIC_POD_CONTAINERS[@]}"
noise

if [ ! -d "${ETCD_DATA_DIR_BACKUP}" ]; then
  mkdir -p "${ETCD_DATA_DIR_BACKUP}"
fi

if [ -d "${ETCD_DATA_DIR}/member" ]; then
  if [ -d "${ETCD_DATA_DIR_BACKUP}/member" ]; then
    echo "removing previous backup ${ETCD_DATA_DIR_BACKUP}/member"
    rm -rf "${ETCD_DATA_DIR_BACKUP}"/member
  fi
  echo "Moving etcd data-dir ${ETCD_DATA_DIR}/member to ${ETCD_DATA_DIR_BACKUP}"
  mv "${ETCD_DATA_DIR}"/member "${ETCD_DATA_DIR_BACKUP}"/
fi

tar -C "${CONFIG_FILE_DIR}" -xzf "${BACKUP_FILE}" static-pod-resources

cp -p "${SNAPSHOT_FILE}" "${ETCD_DATA_DIR_BACKUP}"/snapshot.db

echo "starting restore-etcd static pod"
cp -p "${RESTORE_ETCD_POD_YAML}" "${MANIFEST_DIR}"/etcd-pod.yaml

restore_static_pods "${STATIC_POD_LIST[@]}"
