#!/usr/bin/env bash
# Stand-in for the node's /usr/local/bin/cluster-backup.sh, installed into the
# sandbox node by `scripts/sandbox.sh etcd-scripts DIR` (and the rhcos profile).
# Copied from openshift/cluster-etcd-operator bindata/etcd/cluster-backup.sh and
# the etcd-common-tools it sources: same arguments ([--force] DIR), same
# refusals and exit codes (not root, no DIR or DIR a file -> usage, exit 1;
# etcd.env or etcd-common-tools missing -> exit 1; a manifest or its revision
# missing -> exit 1; without --force an operator progressing or no API server
# -> exit 1), same files (static_kuberesources_<date>[__POSSIBLY_DIRTY__].tar.gz
# of the live revisions relative to /etc/kubernetes, mode 0600, and
# snapshot_<date>[__POSSIBLY_DIRTY__].db checked with `etcdctl snapshot
# status`), both removed on error.
# Differences, for the sandbox: paths are under the node root this file sits
# in; the endpoint is etcd.env's ETCDCTL_ENDPOINTS (the real one uses
# https://<node ip>:2379); SANDBOX_SCRIPT_NOISE bytes (default 200000) of
# progress/log lines go to stdout and stderr, as a slow node's etcdctl and
# tar output do, so callers must drain more than a pipe buffer.
set -o errexit
set -o pipefail
set -o errtrace
R=$(cd "$(dirname "$0")/../../.." && pwd)
[ "$R" = / ] && R=

if [[ $EUID -ne 0 ]]; then
  echo "This script must be run as root"
  exit 1
fi

function usage {
  echo 'Path to backup dir required: ./cluster-backup.sh [--force] <path-to-backup-dir>'
  exit 1
}

IS_DIRTY=""
if [ "${1:-}" == "--force" ]; then
  IS_DIRTY="__POSSIBLY_DIRTY__"
  shift
fi
if [ -z "${1:-}" ] || [ -f "$1" ]; then
  usage
fi
if [ ! -d "$1" ]; then
  mkdir -p "$1"
fi

noise() {
  local n=${SANDBOX_SCRIPT_NOISE:-200000} line
  line='{"level":"info","ts":"2024-01-01T00:00:00.000Z","caller":"snapshot/v3_snapshot.go:65","msg":"fetching snapshot"}'
  yes "$line" | head -c "$n" || true
  yes "$line" | head -c "$n" >&2 || true
}

function check_if_operator_is_progressing {
  local operator="$1"
  if [ ! -f "${KUBECONFIG}" ]; then
    echo "Valid kubeconfig is not found in kube-apiserver-certs. Exiting!"
    exit 1
  fi
  progressing=$(oc get co "${operator}" -o jsonpath='{.status.conditions[?(@.type=="Progressing")].status}' 2>/dev/null) || true
  if [ "$progressing" == "" ]; then
    echo "Could not find the status of the $operator. Check if the API server is running. Pass the --force flag to skip checks."
    exit 1
  elif [ "$progressing" != "False" ]; then
    echo "Currently the $operator operator is progressing. A reliable backup requires that a rollout is not in progress.  Aborting!"
    exit 1
  fi
}

function backup_latest_kube_static_resources {
  local backup_tar_file="$1"
  local backup_resource_list=("kube-apiserver" "kube-controller-manager" "kube-scheduler" "etcd")
  local latest_resource_dirs=()
  for resource in "${backup_resource_list[@]}"; do
    if [ ! -f "$R/etc/kubernetes/manifests/${resource}-pod.yaml" ]; then
      echo "error finding manifests for the ${resource} pod. please check if it is running."
      exit 1
    fi
    local latest_resource
    latest_resource=$(grep -o -m 1 "/etc/kubernetes/static-pod-resources/${resource}-pod-[0-9]*" "$R/etc/kubernetes/manifests/${resource}-pod.yaml") || true
    if [ -z "${latest_resource}" ]; then
      echo "error finding static-pod-resources for the ${resource} pod. please check if it is running."
      exit 1
    fi
    if [ "${IS_DIRTY}" == "" ]; then
      check_if_operator_is_progressing "${resource}"
    fi
    echo "found latest ${resource}: ${latest_resource}"
    latest_resource_dirs+=("${latest_resource#${CONFIG_FILE_DIR}/}")
  done
  tar -cpzf "$backup_tar_file" -C "$R${CONFIG_FILE_DIR}" "${latest_resource_dirs[@]}"
  chmod 600 "$backup_tar_file"
}

function source_required_dependency {
  local src_path="$1"
  if [ ! -f "${src_path}" ]; then
    echo "required dependencies not found, please ensure this script is run on a node with a functional etcd static pod"
    exit 1
  fi
  # shellcheck disable=SC1090
  source "${src_path}"
}

BACKUP_DIR="$1"
DATESTRING=$(date "+%F_%H%M%S")
BACKUP_TAR_FILE=${BACKUP_DIR}/static_kuberesources_${DATESTRING}${IS_DIRTY}.tar.gz
SNAPSHOT_FILE="${BACKUP_DIR}/snapshot_${DATESTRING}${IS_DIRTY}.db"

trap 'rm -f ${BACKUP_TAR_FILE} ${SNAPSHOT_FILE}' ERR

source_required_dependency "$R/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd.env"
source_required_dependency "$R/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-scripts/etcd-common-tools"
KUBECONFIG=$R$KUBECONFIG

# The certificates: etcd.env names the pod's paths; fall back to the node's.
ETCDCTL_CACERT=$R$ETCDCTL_CACERT; ETCDCTL_CERT=$R$ETCDCTL_CERT; ETCDCTL_KEY=$R$ETCDCTL_KEY
export ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
if [ ! -f "${ETCDCTL_CACERT}" ]; then
  echo "Certificate ${ETCDCTL_CACERT} is missing. Checking in different directory"
  export ETCDCTL_CACERT=$(echo ${ETCDCTL_CACERT} | sed -e "s|static-pod-certs|static-pod-resources/etcd-certs|")
  export ETCDCTL_CERT=$(echo ${ETCDCTL_CERT} | sed -e "s|static-pod-certs|static-pod-resources/etcd-certs|")
  export ETCDCTL_KEY=$(echo ${ETCDCTL_KEY} | sed -e "s|static-pod-certs|static-pod-resources/etcd-certs|")
  if [ ! -f "${ETCDCTL_CACERT}" ]; then
    echo "Certificate ${ETCDCTL_CACERT} is also missing in the second directory. Exiting!"
    exit 1
  else
    echo "Certificate ${ETCDCTL_CACERT} found!"
  fi
fi

backup_latest_kube_static_resources "${BACKUP_TAR_FILE}"

dl_etcdctl
noise
ETCDCTL_API=3 etcdctl snapshot save "${SNAPSHOT_FILE}"

check_snapshot_status "${SNAPSHOT_FILE}"
snapshot_failed=$?
if [[ $snapshot_failed -eq 1 ]]; then
  echo "snapshot failed with exit code ${snapshot_failed}"
  exit 1
fi

echo "snapshot db and kube resources are successfully saved to ${BACKUP_DIR}"
