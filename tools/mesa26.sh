#!/usr/bin/env bash
# A second lavapipe, with cooperative matrices: Mesa >= 26.1 from Debian 13 (trixie-backports)
# in a chroot, for the tensor-core kernels that Debian 12's Mesa 22.3 cannot run.
#
#   tools/mesa26.sh build            make the root once (about 1.5 minutes, ~700 MB); reused after
#   tools/mesa26.sh run CMD [ARG..]  run a host-built binary inside it, in this directory
#   tools/mesa26.sh cargo ARGS...    cargo on the host, every binary it runs going through `run`
#   tools/mesa26.sh version          print the Mesa version the root holds
#
# `run` bind-mounts the current directory at the same path inside the root, so a binary under
# target/ and the files it reads keep their paths. `cargo` makes it cargo's target runner:
#   tools/mesa26.sh cargo test --release
# builds on the host and runs every test binary on the Mesa 26 lavapipe (what CI runs), with
# TESSERA_REQUIRE_COOP=1 so a cooperative-matrix case that skips there fails.
#
# The root lives in $TESSERA_MESA26_ROOT (default /var/cache/tessera/trixie-mesa26). Needs root
# (debootstrap, chroot, a private mount namespace) and the Debian archive; when the root cannot
# be built this script says why and exits non-zero: it never falls back silently.
set -euo pipefail

ROOT=${TESSERA_MESA26_ROOT:-/var/cache/tessera/trixie-mesa26}
MIN_MAJOR=26
MIN_MINOR=1

die() {
    echo "tools/mesa26.sh: $*" >&2
    exit 1
}

# The Debian mirror this machine already uses (a deb822 `URIs:` line or a one-line `deb` entry).
debian_mirror() {
    local uri
    uri=$(grep -hsE '^(URIs:|deb ) *' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -1 | tr -d ' ')
    echo "${uri:-http://deb.debian.org/debian}"
}

mesa_version() { # prints e.g. 26.1.6 (empty when not installed)
    chroot "$ROOT" dpkg-query -W -f '${Version}' mesa-vulkan-drivers 2>/dev/null |
        sed -E 's/^[0-9]+://; s/[-~+].*$//'
}

mesa_is_new_enough() {
    local v major minor
    v=$(mesa_version) || return 1
    [ -n "$v" ] || return 1
    major=${v%%.*}
    minor=${v#*.}
    minor=${minor%%.*}
    [ "$major" -gt "$MIN_MAJOR" ] || { [ "$major" -eq "$MIN_MAJOR" ] && [ "$minor" -ge "$MIN_MINOR" ]; }
}

# Programs the tests run inside the root besides the test binaries: curl (the raw
# server-sent-events client of tests/serve.rs).
TOOLS="curl"

install_tools() { # $1: the root
    local missing="" tool
    for tool in $TOOLS; do
        chroot "$1" sh -c "command -v $tool" >/dev/null 2>&1 || missing="$missing $tool"
    done
    [ -z "$missing" ] && return 0
    echo "tools/mesa26.sh: installing$missing in $1"
    chroot "$1" apt-get update -qq >>"$ROOT.log" 2>&1 ||
        die "apt-get update inside the root failed; see $ROOT.log"
    # shellcheck disable=SC2086
    chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $missing >>"$ROOT.log" 2>&1 || die "installing$missing in the root failed; see $ROOT.log"
    chroot "$1" apt-get clean
}

build() {
    [ "$(id -u)" -eq 0 ] || die "building the root needs root (debootstrap, chroot)"
    if [ -f "$ROOT/.tessera-ready" ] && mesa_is_new_enough; then
        install_tools "$ROOT"
        echo "tools/mesa26.sh: $ROOT holds Mesa $(mesa_version) (reused)"
        return 0
    fi
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq || die "apt-get update failed: cannot install debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
            die "cannot install debootstrap from the Debian archive"
    fi
    local mirror
    mirror=$(debian_mirror)
    echo "tools/mesa26.sh: building a Debian 13 root in $ROOT from $mirror"
    rm -rf "$ROOT.partial"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase trixie "$ROOT.partial" "$mirror" >"$ROOT.log" 2>&1 ||
        die "debootstrap trixie from $mirror failed (the Debian archive is needed); see $ROOT.log"
    echo "deb $mirror trixie-backports main" >"$ROOT.partial/etc/apt/sources.list.d/backports.list"
    chroot "$ROOT.partial" apt-get update -qq >>"$ROOT.log" 2>&1 ||
        die "apt-get update inside the root failed; see $ROOT.log"
    chroot "$ROOT.partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -t trixie-backports mesa-vulkan-drivers libvulkan1 >>"$ROOT.log" 2>&1 ||
        die "installing mesa-vulkan-drivers from trixie-backports failed; see $ROOT.log"
    install_tools "$ROOT.partial"
    chroot "$ROOT.partial" apt-get clean
    rm -rf "$ROOT"
    mv "$ROOT.partial" "$ROOT"
    mesa_is_new_enough || die "the root holds Mesa '$(mesa_version)', older than $MIN_MAJOR.$MIN_MINOR"
    touch "$ROOT/.tessera-ready"
    echo "tools/mesa26.sh: $ROOT holds Mesa $(mesa_version)"
}

run() {
    [ $# -gt 0 ] || die "usage: tools/mesa26.sh run CMD [ARG...]"
    [ -f "$ROOT/.tessera-ready" ] || die "no Mesa 26 root at $ROOT: run 'tools/mesa26.sh build' first"
    local here
    here=$(pwd -P)
    # A private mount namespace: the mounts vanish with the command, so concurrent and
    # interrupted runs leave nothing behind.
    exec unshare --mount --propagation private -- /bin/bash -c '
        set -e
        root=$1 here=$2
        shift 2
        mount -t proc proc "$root/proc"
        mount --bind /dev "$root/dev"
        mkdir -p "$root$here" "$root/tmp"
        mount --bind "$here" "$root$here"
        exec chroot "$root" /usr/bin/env XDG_RUNTIME_DIR=/tmp TESSERA_REQUIRE_COOP=1 \
            /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$here" "$@"
    ' mesa26 "$ROOT" "$here" "$@"
}

case "${1:-}" in
build) build ;;
run)
    shift
    run "$@"
    ;;
cargo)
    shift
    build
    # The tests start untuned (portable Auto paths) whatever this machine's cache holds.
    if [ -z "${TESSERA_TUNE_CACHE:-}" ]; then
        export TESSERA_TUNE_CACHE="$PWD/target/tmp/mesa26-tuning.json"
        rm -f "$TESSERA_TUNE_CACHE"
    fi
    host=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')
    export "CARGO_TARGET_${host}_RUNNER=$(cd "$(dirname "$0")" && pwd -P)/mesa26.sh run"
    exec cargo "$@"
    ;;
version) mesa_version ;;
*) die "usage: tools/mesa26.sh build | run CMD [ARG...] | cargo ARGS... | version" ;;
esac
