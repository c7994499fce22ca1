#!/usr/bin/env bash
# Builds skiff_<version>_<arch>.deb for amd64, arm64 and armhf (ARMv7) from dist/ (make
# cross) with dpkg-deb: the binary, the systemd unit and an example /etc/skiff/agent.yaml.
# Usage: packaging/deb/build.sh VERSION   → dist/skiff_VERSION_ARCH.deb
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
version=${1:?usage: build.sh VERSION}
version=${version#v}
# A Debian version starts with a digit: a bare commit hash (make's fallback) becomes 0~gitHASH.
[[ $version =~ ^[0-9] && ! $version =~ ^[0-9a-f]{7,}(-dirty)?$ ]] || version=0~git${version//-/.}
command -v dpkg-deb >/dev/null || { echo "build.sh: dpkg-deb not found (Debian: dpkg)" >&2; exit 1; }
for pair in amd64:skiff-linux-amd64 arm64:skiff-linux-arm64 armhf:skiff-linux-armv7; do
  arch=${pair%%:*} bin=$root/dist/${pair#*:}
  [ -x "$bin" ] || { echo "build.sh: $bin missing: run make cross" >&2; exit 1; }
  pkg=$(mktemp -d)
  chmod 0755 "$pkg" # the package's ./ is the system's /
  install -D -m 0755 "$bin" "$pkg/usr/bin/skiff"
  install -D -m 0644 "$root/packaging/systemd/skiff.service" "$pkg/lib/systemd/system/skiff.service"
  install -D -m 0644 "$root/packaging/agent.yaml" "$pkg/etc/skiff/agent.yaml"
  install -D -m 0644 /dev/stdin "$pkg/usr/lib/modules-load.d/skiff.conf" <<<"br_netfilter"
  mkdir -p "$pkg/DEBIAN"
  cat >"$pkg/DEBIAN/control" <<CTL
Package: skiff
Version: $version
Architecture: $arch
Maintainer: skiff maintainers <maintainers@skiff.invalid>
Depends: podman (>= 4.3), conmon, catatonit | tini, nftables, iproute2
Recommends: runc | crun, git
Section: admin
Priority: optional
Homepage: https://github.com/skiffhq/skiff
Description: GitOps orchestrator for small edge clusters
 Every node runs the same agent; the agents form a Raft group, pull Kubernetes
 manifests from git, run the pods with Podman, serve cluster DNS and terminate TLS
 ingress. git push, and every node converges.
CTL
  echo "/etc/skiff/agent.yaml" >"$pkg/DEBIAN/conffiles"
  cat >"$pkg/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  modprobe br_netfilter 2>/dev/null || true
  systemctl daemon-reload >/dev/null 2>&1 || true
  systemctl enable podman.socket >/dev/null 2>&1 || true
  echo "skiff: set repo in /etc/skiff/agent.yaml, then: systemctl enable --now skiff"
fi
POST
  cat >"$pkg/DEBIAN/prerm" <<'PRE'
#!/bin/sh
set -e
if [ "$1" = remove ]; then systemctl disable --now skiff >/dev/null 2>&1 || true; fi
PRE
  chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm"
  dpkg-deb --root-owner-group --build "$pkg" "$root/dist/skiff_${version}_${arch}.deb" >/dev/null
  rm -rf "$pkg"
  echo "dist/skiff_${version}_${arch}.deb"
done
