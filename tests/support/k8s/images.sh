#!/usr/bin/env bash
# images.sh RELEASE_DIR TAG — build Postern's two images from the repository's Dockerfile on a machine
# without a Docker engine and without access to the Rust builder image: the binaries of RELEASE_DIR
# (a `cargo build --release --locked -p postern-controller -p postern-gateway --bin postern
# --bin postern-gateway` on this Debian 12 host, the command of the Dockerfile's build stage) are
# installed stripped into a build context that replaces the stage named `build`
# (`podman build --build-context build=DIR`), on the runtime base of make-base-image.sh (distroless
# cc-debian12 assembled from Debian packages). The Dockerfile's runtime stages are used unchanged:
#   localhost/postern/gateway:TAG     (--target gateway)
#   localhost/postern/controller:TAG  (--target controller)
# Prints the two references. Nothing is pulled (--pull=never). ~5-10 s after the base image exists.
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ $# -eq 2 ] || die "usage: images.sh RELEASE_DIR TAG"
rel=$1 tag=$2
root=$(cd "$K8S_TOOLS/../../.." && pwd)
for b in postern postern-gateway; do
  [ -x "$rel/$b" ] || die "no $rel/$b: build it first (cargo build --release --locked -p postern-controller -p postern-gateway --bin postern --bin postern-gateway)"
done
base=localhost/postern-base/cc-debian12:nonroot
"$K8S_TOOLS/make-base-image.sh" "$base" >&2
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
# What the build stage leaves in /out: the two binaries, stripped (install -s, as the Dockerfile does).
install -D -s -m 0755 "$rel/postern" "$w/build/out/postern"
install -D -s -m 0755 "$rel/postern-gateway" "$w/build/out/postern-gateway"
mkdir "$w/empty"   # the Dockerfile's `COPY . .` belongs to the replaced stage: no context needed
for target in gateway controller; do
  ref=localhost/postern/$target:$tag
  podman build --pull=never --quiet --build-context "build=$w/build" --build-arg "RUNTIME_IMAGE=$base" \
    --target "$target" -t "$ref" -f "$root/Dockerfile" "$w/empty" >/dev/null \
    || die "podman build --target $target failed"
  echo "$ref"
done
