# Step 10: the Debian base root filesystem for $ARCH, from Debian's packages with mmdebstrap.
# Installing the kernel and initramfs under qemu-user is the slow part, so the result is
# cached as a tarball keyed by everything that goes into it; an empty cache just builds it.
# In: ARCH SUITE MIRROR CACHE_DIR REPO. Out: BASE_TAR.

# Everything that decides the base's content; the cache key is its hash.
base_recipe() {
    printf '%s\n' "$ARCH" "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$BASE_COMPONENTS" "$BASE_DPKG_OPTS"
    cat "$REPO/image/packages.$ARCH"
    (cd "$REPO/overlays" && find etc/initramfs-tools -type f | LC_ALL=C sort | xargs sha256sum)
}
base_key() { base_recipe | sha256sum | cut -c1-16; }

BASE_COMPONENTS="main non-free-firmware"   # raspi-firmware lives in non-free-firmware
# No docs, man pages or translations on an appliance.
BASE_DPKG_OPTS="path-exclude=/usr/share/doc/* path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/* path-exclude=/usr/share/locale/*"

base_packages() { grep -v -e '^#' -e '^[[:space:]]*$' "$REPO/image/packages.$ARCH" | paste -sd, -; }

build_base() {
    [ -f "$REPO/image/packages.$ARCH" ] || die "no package list image/packages.$ARCH (supported: arm64, armhf)"
    BASE_TAR="$CACHE_DIR/base-$ARCH-$(base_key).tar"
    mkdir -p "$CACHE_DIR"
    # One builder per arch at a time: a second build waits, then finds the tarball made. The
    # lock is held until make_rootfs has unpacked the tarball (so no build deletes it meanwhile).
    exec 9>"$CACHE_DIR/.lock-$ARCH"
    flock 9
    if [ -s "$BASE_TAR" ]; then
        log "base rootfs from cache: $BASE_TAR"
        return 0
    fi
    log "building base rootfs for $ARCH with mmdebstrap (slow: kernel + initramfs under qemu-user)"
    partial="$BASE_TAR.partial.$$"
    on_exit "rm -f '$partial'"
    set -f  # the dpkg options hold globs meant for dpkg, not for this shell
    # shellcheck disable=SC2046
    mmdebstrap --arch="$ARCH" --variant=minbase --include="$(base_packages)" \
        $(for o in $BASE_DPKG_OPTS; do printf ' --dpkgopt=%s' "$o"; done) \
        --essential-hook='mkdir -p "$1/etc/initramfs-tools"' \
        --essential-hook="sync-in $REPO/overlays/etc/initramfs-tools /etc/initramfs-tools" \
        --format=tar "$SUITE" "$partial" \
        "deb $MIRROR $SUITE $BASE_COMPONENTS" \
        "deb $MIRROR $SUITE-updates $BASE_COMPONENTS" \
        "deb $SECURITY_MIRROR $SUITE-security $BASE_COMPONENTS" >&2 \
        || die "mmdebstrap could not build the $ARCH base (its messages are above)"
    set +f
    mv "$partial" "$BASE_TAR"
    # Older bases for this arch are dead weight (~800 MB each).
    find "$CACHE_DIR" -maxdepth 1 -name "base-$ARCH-*.tar" ! -name "$(basename "$BASE_TAR")" -delete
    log "base rootfs cached: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
}
