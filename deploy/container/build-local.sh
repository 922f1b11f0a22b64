#!/usr/bin/env bash
# Builds the runtime image without any registry: a Debian base made by mmdebstrap from Debian
# packages, and the binary built on this machine (cargo build --release). For machines that can
# reach Debian's mirror but no image registry. Needs: mmdebstrap, buildah (run as root).
# Usage: deploy/container/build-local.sh [TAG]   (default portcullis:<version>)
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-portcullis:$version}
work=$(mktemp -d /tmp/portcullis-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo build --release --locked -p portcullis
# The same runtime base the Containerfile uses: Debian bookworm, minimal, with the CA bundle.
mmdebstrap --variant=minbase --include=ca-certificates,passwd bookworm "$work/rootfs.tar"
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
base=$(buildah from scratch)
trap 'buildah rm "$base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mnt=$(buildah mount "$base")
tar -C "$mnt" -xf "$work/rootfs.tar"
chroot "$mnt" sh -c 'groupadd --system --gid 10001 portcullis &&
  useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/portcullis --shell /usr/sbin/nologin portcullis &&
  install -d -o 10001 -g 10001 -m 0750 /var/lib/portcullis /etc/portcullis &&
  rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/locale/* /usr/share/man/* /usr/share/info/*'
# Debug info stays on the build machine (the release profile keeps it for profiling).
install -s -m 0755 target/release/portcullis "$mnt/usr/local/bin/portcullis"
buildah umount "$base"
buildah config --user 10001:10001 --volume /var/lib/portcullis --port 8080 --port 8443 --port 9090 \
  --entrypoint '["/usr/local/bin/portcullis"]' --cmd 'run --config /etc/portcullis/config/config.yaml' \
  --label org.opencontainers.image.title=portcullis --label "org.opencontainers.image.version=$version" "$base"
buildah commit --rm "$base" "$tag"
echo "built $tag"
