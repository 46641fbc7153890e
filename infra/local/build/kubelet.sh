#!/usr/bin/env bash
# Build kubelet (with cgo) from the k8s.io/kubernetes Go module: see kubernetes.sh.
# usage: infra/local/build/kubelet.sh OUTPUT_BINARY
exec "$(dirname "$0")/kubernetes.sh" kubelet "$@"
