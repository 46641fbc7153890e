#!/usr/bin/env bash
# Build kubectl from the k8s.io/kubernetes Go module: see kubernetes.sh.
# usage: infra/local/build/kubectl.sh OUTPUT_BINARY
exec "$(dirname "$0")/kubernetes.sh" kubectl "$@"
