#!/usr/bin/env bash
# Installs what skiff's demo and tests need on a Debian/Ubuntu machine: Podman with runc,
# git, busybox-static (test images), iproute2/nftables (multi-node rig). Idempotent: it only
# calls apt when something is missing. Run as root, or install the packages yourself.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have podman || need+=(podman)
have runc || need+=(runc)
have conmon || need+=(conmon)
have catatonit || [ -x /usr/libexec/podman/catatonit ] || need+=(catatonit)
have git || need+=(git)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
have ip || need+=(iproute2)
have nft || need+=(nftables)
have iptables || need+=(iptables)
[ -d /usr/lib/cni ] || [ -x /usr/lib/podman/netavark ] || need+=(containernetworking-plugins)
for p in "$@"; do # extra packages asked for by the caller (benchmarks)
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "skiff: missing packages: ${need[*]}" >&2
    echo "skiff: run as root, or: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  if ! have apt-get; then
    echo "skiff: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
    exit 1
  fi
  echo "skiff: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$(id -u)" != 0 ]; then
  echo "skiff: the demo and tests run Podman as root (rootful pods); run as root" >&2
  exit 1
fi
