# Step 12 (Debian base only): what goes on top of the cached base and needs an ARM chroot to
# make. Debian's gpiod (gpioinfo, gpioget: to see the pins dnspair holds) and nftables (the
# ruleset dnspair-firewall.service loads, docs/security.md), as .debs together with whatever
# of their dependencies the base lacks (apt resolves them against the base: for nftables,
# libnftables1 and what it needs of libnftnl11, libjansson4, libmnl0, libxtables12), and for
# armhf the lgpio wheel, which PyPI has for aarch64 only: built from its sdist (it carries the C
# library's sources and the SWIG interface), statically linked as PyPI's own wheels are.
# Cached apart from the base, so this list can change without a 6-11 minute base rebuild: the
# .debs by the base they were resolved against and this list, the wheel by its version. Adding
# a package here, not to image/packages.ARCH, keeps the cached base (its key hashes that list).
# In: ARCH BASE_TAR CACHE_DIR WORK REPO. Out: EXTRA_DEBS_DIR, EXTRA_WHEELS_DIR.

EXTRA_DEBS="gpiod nftables"
LGPIO_BUILD_DEBS="gcc libc6-dev python3-dev swig"

lgpio_version() { sed -n 's/^lgpio==//p' "$REPO/constraints.txt"; }

extras_missing() {  # what of this arch's extras the cache lacks: debs, wheel
    [ -d "$EXTRA_DEBS_DIR" ] || printf 'debs '
    if [ "$ARCH" = armhf ] && ! ls "$EXTRA_WHEELS_DIR/lgpio-$(lgpio_version)-"*.whl >/dev/null 2>&1; then
        printf 'wheel '
    fi
}

make_extras() {
    base=$(basename "$BASE_TAR" .tar)
    EXTRA_DEBS_DIR=$CACHE_DIR/debs-${base#base-}-$(printf '%s' "$EXTRA_DEBS" | sha256sum | cut -c1-8)
    EXTRA_WHEELS_DIR=$CACHE_DIR/wheels-$ARCH
    exec 8>"$CACHE_DIR/.lock-extras-$ARCH"
    flock 8
    missing=$(extras_missing)
    if [ -z "$missing" ]; then
        log "extras from cache: $EXTRA_DEBS_DIR"
        exec 8>&-
        return 0
    fi
    log "making extras for $ARCH ($missing) in a copy of the base (apt and gcc under qemu-user)"
    tree=$WORK/extras-$ARCH
    on_exit "rm -rf --one-file-system '$tree'"
    mkdir -p "$tree"
    tar -C "$tree" --numeric-owner -xpf "$BASE_TAR"
    chroot_mount "$tree"
    cp -L /etc/resolv.conf "$tree/etc/resolv.conf"
    cp -L /etc/ssl/certs/ca-certificates.crt "$tree/tmp/ca.crt" 2>/dev/null || true
    printf '#!/bin/sh\nexit 101\n' > "$tree/usr/sbin/policy-rc.d"; chmod 755 "$tree/usr/sbin/policy-rc.d"
    apt="apt-get -q -o Acquire::Languages=none"
    in_chroot "$tree" $apt update >&2 || die "apt-get update failed in the $ARCH base"
    case "$missing" in *debs*)
        mkdir -p "$tree/tmp/debs/partial"
        in_chroot "$tree" $apt install -y --no-install-recommends --download-only \
            -o Dir::Cache::archives=/tmp/debs $EXTRA_DEBS >&2 || die "apt-get could not fetch $EXTRA_DEBS for $ARCH"
        rm -rf "$EXTRA_DEBS_DIR.partial"; mkdir -p "$EXTRA_DEBS_DIR.partial"
        cp "$tree"/tmp/debs/*.deb "$EXTRA_DEBS_DIR.partial/"
        mv "$EXTRA_DEBS_DIR.partial" "$EXTRA_DEBS_DIR"
        # Those resolved against an older base are dead weight.
        find "$CACHE_DIR" -maxdepth 1 -name "debs-$ARCH-*" ! -name "$(basename "$EXTRA_DEBS_DIR")" -exec rm -rf {} + ;;
    esac
    case "$missing" in *wheel*)
        ver=$(lgpio_version)
        in_chroot "$tree" $apt install -y --no-install-recommends $LGPIO_BUILD_DEBS >&2 \
            || die "apt-get could not install the tools to build lgpio for $ARCH"
        in_chroot "$tree" python3 -m venv /tmp/lgpio-venv
        # PYPI=1: lgpio's setup.py then compiles its C library into the module (no liblgpio.so).
        in_chroot "$tree" env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 PYPI=1 ${https_proxy:+https_proxy=$https_proxy} \
            $([ -s "$tree/tmp/ca.crt" ] && echo PIP_CERT=/tmp/ca.crt) \
            /tmp/lgpio-venv/bin/pip wheel -q --no-cache-dir --disable-pip-version-check --no-deps --use-pep517 \
            --no-binary lgpio -w /tmp/wheels "lgpio==$ver" >&2 || die "could not build lgpio $ver for $ARCH from its sdist"
        mkdir -p "$EXTRA_WHEELS_DIR"
        for w in "$tree"/tmp/wheels/lgpio-*.whl; do  # copied, then renamed: never half a wheel in the cache
            cp "$w" "$EXTRA_WHEELS_DIR/.partial.whl" && mv "$EXTRA_WHEELS_DIR/.partial.whl" "$EXTRA_WHEELS_DIR/${w##*/}"
        done
        log "built $(basename "$EXTRA_WHEELS_DIR"/lgpio-"$ver"-*.whl) (cached in $EXTRA_WHEELS_DIR)" ;;
    esac
    chroot_umount "$tree"
    rm -rf --one-file-system "$tree"
    exec 8>&-
}

install_extras() {  # $1 tree: the cached .debs, with dpkg (no apt lists needed)
    root=$1
    mkdir -p "$root/tmp/dnspair-debs"
    cp "$EXTRA_DEBS_DIR"/*.deb "$root/tmp/dnspair-debs/"
    in_chroot "$root" sh -c 'dpkg -i /tmp/dnspair-debs/*.deb' >&2 || die "dpkg could not install $EXTRA_DEBS into the $ARCH image"
    rm -rf "$root/tmp/dnspair-debs"
}
