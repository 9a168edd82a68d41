# Step 00: the build machine's tools. Installs what is missing with apt-get; if it cannot,
# says in one line what is missing.

HOST_NEEDS="mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support
arch-test:arch-test bmaptool:bmap-tools mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk
xz:xz-utils mkfs.ext4:e2fsprogs ssh-keygen:openssh-client tar:tar"
# Debian's own python3: apt installs these modules for it, whatever else is first on PATH.
HOST_PY=/usr/bin/python3
HOST_PY_NEEDS="yaml:python3-yaml pip:python3-pip setuptools:python3-setuptools wheel:python3-wheel"

host_missing() {
    [ -x "$HOST_PY" ] || printf 'python3 '
    for pair in $HOST_NEEDS; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || printf '%s ' "${pair#*:}"
    done
    for pair in $HOST_PY_NEEDS; do
        "$HOST_PY" -c "import ${pair%%:*}" >/dev/null 2>&1 || printf '%s ' "${pair#*:}"
    done
}

host_tools() {
    missing=$(host_missing)
    if [ -n "$missing" ]; then
        log "installing build tools: $missing"
        export DEBIAN_FRONTEND=noninteractive
        # Waits for another apt (unattended-upgrades, a second build) instead of failing at once.
        { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
          apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing; } >/dev/null 2>&1 || true
        missing=$(host_missing)
        [ -z "$missing" ] || die "missing build tools and apt-get could not install them: $missing"
    fi
    # ARM binaries run through qemu-user via binfmt_misc; containers often lack the mount.
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
}

host_can_run() {  # $1 arch
    case "$1" in arm64) q=qemu-aarch64 ;; armhf) q=qemu-arm ;; esac
    arch-test "$1" >/dev/null 2>&1 || update-binfmts --enable "$q" >/dev/null 2>&1 || true
    arch-test "$1" >/dev/null 2>&1 || die "this machine cannot run $1 binaries: needs binfmt_misc with $q (qemu-user-static, binfmt-support)"
}
