# Step 10: the Debian base root filesystem for $ARCH, from Debian's packages with mmdebstrap.
# Installing the kernel and initramfs under qemu-user is the slow part, so the result is
# cached as a tarball keyed by everything that goes into it; an empty cache just builds it.
# In: ARCH SUITE MIRROR CACHE_DIR REPO. Out: BASE_TAR.

base_key() {
    {
        printf '%s\n' "$ARCH" "$SUITE" "$MIRROR"
        cat "$REPO/image/packages.$ARCH" "$REPO/image/10-base.sh"
        (cd "$REPO/overlays" && find etc/initramfs-tools -type f | LC_ALL=C sort | xargs sha256sum)
    } | sha256sum | cut -c1-16
}

base_packages() { grep -v -e '^#' -e '^[[:space:]]*$' "$REPO/image/packages.$ARCH" | paste -sd, -; }

build_base() {
    [ -f "$REPO/image/packages.$ARCH" ] || die "no package list image/packages.$ARCH (supported: arm64, armhf)"
    BASE_TAR="$CACHE_DIR/base-$ARCH-$(base_key).tar"
    if [ -s "$BASE_TAR" ]; then
        log "base rootfs from cache: $BASE_TAR"
        return 0
    fi
    mkdir -p "$CACHE_DIR"
    log "building base rootfs for $ARCH with mmdebstrap (slow: kernel + initramfs under qemu-user)"
    partial="$BASE_TAR.partial.$$"
    on_exit "rm -f '$partial'"
    components="main non-free-firmware"   # raspi-firmware lives in non-free-firmware
    mmdebstrap --arch="$ARCH" --variant=minbase --include="$(base_packages)" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --essential-hook='mkdir -p "$1/etc/initramfs-tools"' \
        --essential-hook="sync-in $REPO/overlays/etc/initramfs-tools /etc/initramfs-tools" \
        --format=tar "$SUITE" "$partial" \
        "deb $MIRROR $SUITE $components" \
        "deb $MIRROR $SUITE-updates $components" \
        "deb $SECURITY_MIRROR $SUITE-security $components" >&2
    mv "$partial" "$BASE_TAR"
    log "base rootfs cached: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
}
