#!/usr/bin/env bash
# Build kube-apiserver from the k8s.io/kubernetes Go module: see kubernetes.sh.
# usage: infra/local/build/kube-apiserver.sh OUTPUT_BINARY
exec "$(dirname "$0")/kubernetes.sh" kube-apiserver "$@"
