# Step 50: out/build-report.txt, what went into the images. The SHA-256 lines let the user
# check the download; the key itself is never printed.

# Per arch, while its root file system still exists: base, Python and Debian package versions.
report_arch() {
    {
        echo
        echo "== arch $ARCH: $(nodes_of "$ARCH")"
        if [ -n "$BASE_IMG" ]; then
            echo "base: $BASE_DESC, with Debian $SUITE packages added (not cached)"
        else
            echo "base: Debian $SUITE (mmdebstrap), cached as $(basename "$BASE_TAR")"
        fi
        echo "Python packages in /opt/dnspair (checked against constraints.txt):"
        printf '%s\n' "$PIP_VERSIONS"
        echo "Debian packages:"
        dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${Package}=${Version}\n' \
            'linux-image-*' raspi-firmware bind9 network-manager openssh-server systemd python3 \
            python3-systemd initramfs-tools 2>/dev/null | grep -v '=$'
        echo "($(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${db:Status-Abbrev}\n' | grep -c '^ii') packages in all)"
    } >> "$WORK/report-arches"
}

write_report() {
    r=$STAGE/build-report.txt
    {
        echo "dnspair image build $(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(date +%s) - START )) s"
        echo "config: $CONFIG   read-only root: $([ "$READ_ONLY" = 1 ] && echo yes || echo no)"
        echo "dnspair source: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
        echo "authentication key $AUTHKEY_PATH: $AUTHKEY_ORIGIN, the same in every image below;"
        echo "  key id (SHA-256 of the key, first 16 hex digits): $AUTHKEY_ID"
        echo
        echo "images:"
        printf '%s' "$IMG_SIZES"
        (cd "$STAGE" && cat $(for n in $NODES; do echo "$n.img.xz.sha256"; done))
        cat "$WORK/report-arches"
    } > "$r"
    log "report: $OUT/build-report.txt"
}

# out/os_list.json: Raspberry Pi Imager's custom repository for this build's images.
write_oslist() {
    "$HOST_PY" "$REPO/image/oslist.py" "$STAGE" "$IMAGE_URL" "$(date -u +%F)" "$AUTHKEY_ID" < "$WORK/oslist" \
        || die "could not write os_list.json"
    log "Raspberry Pi Imager list: $OUT/os_list.json (images at $IMAGE_URL)"
}
