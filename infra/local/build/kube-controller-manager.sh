#!/usr/bin/env bash
# Build kube-controller-manager from the k8s.io/kubernetes Go module: see kubernetes.sh.
# The KEDA scaling test (tests/integration/keda.py) runs it for the deployment,
# replicaset, horizontal pod autoscaler and garbage collector controllers.
#
# Measured on the 2-core dev machine, module cache warm from kube-apiserver and two
# other Go builds running alongside: 3m03s wall (132 s CPU), peak RSS 2.5 GiB, a
# 101 MiB binary; the up-to-date check afterwards takes 0.3 s.
#
# usage: infra/local/build/kube-controller-manager.sh OUTPUT_BINARY
exec "$(dirname "$0")/kubernetes.sh" kube-controller-manager "$@"
