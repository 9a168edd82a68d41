# Step 20: the root filesystem both nodes share: base + overlays/ + dnspair in /opt/dnspair
# (exact versions from constraints.txt) + the pair's config and a fresh authentication key.
# In: ARCH, BASE_TAR or PIOS_ROOT (--base), WORK REPO CONFIG SSH_KEY READ_ONLY. Out: ROOT, AUTHKEY_PATH, AUTHKEY_ID.

lay_overlays() {  # $1 tree, then tar --exclude options
    root=$1; shift
    # Owned by root whatever the checkout's owner; modes come from git (hooks are executable).
    tar -C "$REPO/overlays" --owner=0 --group=0 --numeric-owner "$@" -cf - . | tar -C "$root" -xpf -
}

# A wheel of the working tree (the code the tests ran), built once per build (pure Python, every
# arch's root installs it) from a copy so the checkout gets no build/ or egg-info litter.
make_wheel() {
    src=$WORK/dnspair-src WHEEL_DIR=$WORK/wheel
    mkdir -p "$src" "$WHEEL_DIR"
    cp -r "$REPO/pyproject.toml" "$REPO/src" "$src/"
    [ -f "$REPO/README.md" ] && cp "$REPO/README.md" "$src/"
    "$HOST_PY" -m pip wheel -q --no-deps --no-build-isolation --disable-pip-version-check -w "$WHEEL_DIR" "$src" >&2 \
        || die "could not build the dnspair wheel from $REPO (pyproject.toml, src/)"
}

install_dnspair() {
    root=$1 stage=$1/tmp/dnspair-install
    mkdir -p "$stage"; cp "$WHEEL_DIR"/dnspair-*.whl "$stage/"
    cp "$REPO/constraints.txt" "$stage/"
    # Wheels PyPI lacks for this arch, built by make_extras (12-extras.sh): lgpio for armhf.
    mkdir -p "$stage/wheels"
    if [ -n "${EXTRA_WHEELS_DIR:-}" ] && [ -d "$EXTRA_WHEELS_DIR" ]; then cp "$EXTRA_WHEELS_DIR"/*.whl "$stage/wheels/" 2>/dev/null || true; fi
    # pip inside the ARM chroot fetches the ARM wheels from PyPI. systemd-python 235 is
    # Debian's python3-systemd (same upstream release as the pin), seen through
    # --system-site-packages, so the image needs no compiler.
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    log "installing dnspair into /opt/dnspair (pip under qemu-user)"
    whl=$(cd "$stage" && ls dnspair-*.whl)
    in_chroot "$root" python3 -m venv --system-site-packages /opt/dnspair
    # The build machine's CA bundle: pip must trust what the host trusts (e.g. a TLS proxy).
    cp -L /etc/ssl/certs/ca-certificates.crt "$stage/ca.crt" 2>/dev/null || true
    in_chroot "$root" env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 ${https_proxy:+https_proxy=$https_proxy} \
        $([ -s "$stage/ca.crt" ] && echo PIP_CERT=/tmp/dnspair-install/ca.crt) \
        /opt/dnspair/bin/pip install -q --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/dnspair-install/wheels \
        -c /tmp/dnspair-install/constraints.txt "/tmp/dnspair-install/$whl" >&2 \
        || die "pip could not install dnspair with constraints.txt into the image"
    ln -sf /opt/dnspair/bin/dnspair "$root/usr/local/bin/dnspair"
    ln -sf /opt/dnspair/bin/check_dnspair "$root/usr/local/bin/check_dnspair"
}

# One key per build (or --authkey's), the same in every node's image whatever its arch.
make_authkey() {
    AUTHKEY_PATH=$("$HOST_PY" "$REPO/image/nodeplan.py" key-file "$CONFIG")
    if [ -n "$AUTHKEY_FILE" ]; then
        (umask 077 && cat "$AUTHKEY_FILE" > "$WORK/authkey")
        AUTHKEY_ORIGIN="from $AUTHKEY_FILE"
    else
        (umask 077 && "$HOST_PY" "$REPO/image/nodeplan.py" authkey > "$WORK/authkey")
        AUTHKEY_ORIGIN="new for this build"
    fi
    AUTHKEY_ID=$(sha256sum "$WORK/authkey" | cut -c1-16)
}

make_rootfs() {
    ROOT=$WORK/rootfs-$ARCH
    if [ -n "$BASE_IMG" ]; then
        mv "$PIOS_ROOT" "$ROOT"
        lay_overlays "$ROOT" $PIOS_OVERLAY_SKIP
        chroot_mount "$ROOT"
        pios_packages "$ROOT"
    else
        mkdir -p "$ROOT"
        log "unpacking base rootfs ($ARCH)"
        tar -C "$ROOT" --xattrs --xattrs-include='*' --numeric-owner -xpf "$BASE_TAR"
        exec 9>&-  # build_base's cache lock: the tarball is no longer needed
        lay_overlays "$ROOT"
        chroot_mount "$ROOT"
        install_extras "$ROOT"
    fi
    install_dnspair "$ROOT"

    # The pair's config and the build's key.
    install -D -m 0644 "$CONFIG" "$ROOT/etc/dnspair/dnspair.yaml"
    install -D -m 0600 -o 0 -g 0 "$WORK/authkey" "$ROOT$AUTHKEY_PATH"

    # The control socket's two roles (docs/security.md): dnspair-admin may change state,
    # dnspair-monitor may read the status. NRPE's check_dnspair only reads it.
    # Before check-config --key, which refuses groups the host does not have.
    in_chroot "$ROOT" groupadd --system dnspair-admin
    in_chroot "$ROOT" groupadd --system dnspair-monitor
    if grep -q '^nagios:' "$ROOT/etc/passwd"; then in_chroot "$ROOT" usermod -aG dnspair-monitor nagios; fi

    # bind's config for each node of this arch, rendered from the pair's config by the image's own
    # dnspair (core/bindconf.py: zones, catalog, TSIG key from the pair's key); staged here, laid
    # into each node's tree by step 40.
    # A config the image's dnspair rejects is reported as that, not as a failed render.
    in_chroot "$ROOT" /usr/local/bin/dnspair check-config --key /etc/dnspair/dnspair.yaml >&2 \
        || die "dnspair check-config rejected $CONFIG inside the image"
    for n in $(nodes_of "$ARCH"); do
        in_chroot "$ROOT" /usr/local/bin/dnspair dns render --config /etc/dnspair/dnspair.yaml --node "$n" \
            --root "/usr/local/lib/dnspair-image/bind/$n" >&2 || die "dnspair dns render failed for $n"
    done

    install -d -m 0700 "$ROOT/root/.ssh"
    install -m 0600 "$SSH_KEY" "$ROOT/root/.ssh/authorized_keys"

    in_chroot "$ROOT" systemctl enable dnspair.service dnspair-node-settings.service dnspair-grow-root.service named.service ssh.service \
        dnspair-firewall.service dnspair-firewall.path \
        NetworkManager.service systemd-timesyncd.service dnspair-dns-clock.path >&2
    # No real-time clock on a Pi: systemd moves a clock that is behind this file's mtime forward
    # to it at boot, so a fresh card starts at the build's date rather than the distant past.
    # After that the clock is NTP's (systemd-timesyncd also keeps the last one across reboots).
    # The build's start, the same on every node of every arch: the two nodes' zone transfers are
    # TSIG-signed, which bind refuses between clocks more than 300 s apart (no NTP yet).
    touch -d "@$START" "$ROOT/usr/lib/clock-epoch"

    if [ -n "$BASE_IMG" ]; then
        pios_first_boot "$ROOT"  # Pi OS keeps its kernel, config.txt; cmdline.txt is per node
    else
        # Kernel command line and config.txt come from raspi-firmware's own hook, fed by
        # overlays/etc/default/raspi-firmware (and the read-only switch below).
        if [ "$READ_ONLY" = 1 ]; then
            echo "dnspair.overlayroot" > "$ROOT/etc/default/raspi-extra-cmdline"
        fi
        kver=$(basename "$(ls -1 "$ROOT"/boot/vmlinuz-* | sort -V | tail -1)")
        in_chroot "$ROOT" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware "${kver#vmlinuz-}" >&2
    fi

    # Nothing of the build machine or of the cached base stays: per-node identity is made later.
    rm -f "$ROOT"/etc/ssh/ssh_host_*_key* "$ROOT/etc/bind/rndc.key" "$ROOT/var/lib/dbus/machine-id" \
        "$ROOT/var/lib/systemd/random-seed"
    : > "$ROOT/etc/machine-id"
    rm -rf "$ROOT/tmp/dnspair-install" "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin
    printf 'nameserver 127.0.0.1\n' > "$ROOT/etc/resolv.conf"
}
