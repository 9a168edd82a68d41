# Step 40: one node's image. Copies the shared root, adds the node's identity (settings file,
# host name, static address, SSH host keys, rndc key, its bind config) and writes out/NODE.img.xz, .bmap, .sha256.
# The disk is assembled in a plain file: mkfs.vfat/mtools and mke2fs -d write the partitions at
# their offsets, so nothing is mounted and no loop device is used.
# In: ROOT WORK STAGE CONFIG GATEWAY XZ_LEVEL. Out: files in STAGE, IMG_SIZES.

# The disk's shape; --base (15-base-image.sh) sets Pi OS's: 512 MiB FAT, bootfs/rootfs, a disk id.
FAT_MIB=256 FAT_LABEL=RASPIFIRM ROOT_LABEL=RASPIROOT DISK_ID=""
ROOT_HEADROOM_MIB=512
FIRST_MIB=4

rndc_key() {  # what rndc-confgen -a writes, without running it under qemu
    printf 'key "rndc-key" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' \
        "$("$HOST_PY" -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
}

node_identity() {  # $1 node, $2 tree
    "$HOST_PY" "$REPO/image/nodeplan.py" settings "$CONFIG" "$1" ${GATEWAY:+--gateway "$GATEWAY"} \
        > "$2/boot/firmware/dnspair-node.txt"
    "$HOST_PY" "$2/usr/local/lib/dnspair-image/nodesettings.py" apply "$2/boot/firmware/dnspair-node.txt" "$2" >&2
    ssh-keygen -q -A -f "$2"
    for k in "$2"/etc/ssh/ssh_host_*_key.pub; do
        sed -i "s/ [^ ]*\$/ root@$1/" "$k"
    done
    bind_gid=$(awk -F: '$1 == "bind" { print $3 }' "$2/etc/group")
    (umask 027 && rndc_key > "$2/etc/bind/rndc.key")
    chown "0:$bind_gid" "$2/etc/bind/rndc.key"
    # This node's bind config (step 20 rendered it): the zones bind writes to are bind's.
    staged=$2/usr/local/lib/dnspair-image/bind
    [ -d "$staged/$1" ] || die "no rendered bind config for $1 in the image"
    cp -a "$staged/$1/." "$2/"
    rm -rf "$staged"
    chown "0:$bind_gid" "$2/etc/bind/dnspair.key" "$2/var/lib/bind/dnspair"
    chmod 0640 "$2/etc/bind/dnspair.key"
    chmod 0775 "$2/var/lib/bind/dnspair"
    # The primary's seed zones (a secondary has none until its first transfer).
    find "$2/var/lib/bind/dnspair" -type f -exec chown "0:$bind_gid" {} + -exec chmod 0664 {} +
}

make_disk() {  # $1 tree, $2 firmware dir, $3 image file
    used_mib=$(( $(du -sxm "$1" | cut -f1) ))
    root_mib=$(( used_mib + used_mib / 4 + ROOT_HEADROOM_MIB ))
    total_mib=$(( FIRST_MIB + FAT_MIB + root_mib ))
    rm -f "$3"; truncate -s "${total_mib}M" "$3"
    # MBR (the Pi 3's boot ROM reads nothing else): 1 = FAT32 LBA (type c), 2 = Linux.
    # sfdisk rather than parted: parted calls udevadm, which build machines may lack.
    # Without DISK_ID sfdisk picks a random disk id.
    { [ -z "$DISK_ID" ] || printf 'label: dos\nlabel-id: 0x%s\n' "$DISK_ID"
      printf 'start=%s, size=%s, type=c\nstart=%s, type=83\n' $(( FIRST_MIB * 2048 )) $(( FAT_MIB * 2048 )) \
        $(( (FIRST_MIB + FAT_MIB) * 2048 )); } | sfdisk -q --no-reread --no-tell-kernel "$3" >/dev/null \
        || die "sfdisk could not partition $3"
    # 1 KiB clusters: enough of them for a real FAT32, which mtools and the Pi firmware expect.
    mkfs.vfat -F 32 -s 2 -n "$FAT_LABEL" --offset $(( FIRST_MIB * 2048 )) "$3" $(( FAT_MIB * 1024 )) >/dev/null 2>&1 \
        || die "mkfs.vfat failed on $3"
    MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$3@@$(( FIRST_MIB * 1048576 ))" "$2"/* ::/ \
        || die "mcopy could not fill the boot partition of $3"
    mke2fs -q -t ext4 -L "$ROOT_LABEL" -d "$1" -E "offset=$(( (FIRST_MIB + FAT_MIB) * 1048576 )),root_owner=0:0" \
        "$3" "$(( root_mib * 1024 ))k" || die "mke2fs could not write the root file system of $3"
}

node_timer() {  # $1 node, $2 tree: its dnspair-upgrade.timer, if upgrade.schedule names it
    # Written by the image's own dnspair, like bind's config (step 20): the host's python3 has
    # PyYAML but not dnspython, which parsing a config with dns zones imports.
    unit=/etc/systemd/system/dnspair-upgrade.timer
    in_chroot "$2" env DNSPAIR_UPGRADE_TIMER=$unit /usr/local/bin/dnspair upgrade \
        --config /etc/dnspair/dnspair.yaml --schedule --node "$1" --no-reload >&2 \
        || die "could not write $1's upgrade timer"
    if [ -f "$2$unit" ]; then
        mkdir -p "$2/etc/systemd/system/timers.target.wants"
        ln -sf ../dnspair-upgrade.timer "$2/etc/systemd/system/timers.target.wants/dnspair-upgrade.timer"
    fi
}

make_node() {
    node=$1
    log "node $node: image"
    tree=$WORK/node-$node fw=$WORK/firmware-$node img=$STAGE/$node.img
    on_exit "rm -rf --one-file-system '$tree' '$fw'"
    cp -a "$ROOT" "$tree"
    node_identity "$node" "$tree"
    node_timer "$node" "$tree"
    # /boot/firmware is the FAT partition's mount point: its files go to the FAT, not to ext4.
    mkdir -p "$fw"; mv "$tree"/boot/firmware/* "$fw/"
    if [ -n "$BASE_IMG" ]; then pios_node_boot "$tree" "$fw"; fi
    make_disk "$tree" "$fw" "$img"
    rm -rf --one-file-system "$tree" "$fw"
    bmaptool -q create -o "$img.bmap" "$img"
    # For os_list.json (Raspberry Pi Imager checks what it wrote against the raw image's hash).
    printf '%s %s %s %s\n' "$node" "$ARCH" "$(stat -c %s "$img")" "$(sha256_of "$img")" >> "$WORK/oslist"
    log "node $node: xz -$XZ_LEVEL"
    xz -T0 "-$XZ_LEVEL" -c "$img" > "$img.xz"
    (cd "$STAGE" && sha256sum "$node.img.xz" > "$node.img.xz.sha256")
    IMG_SIZES="$IMG_SIZES$node.img ($ARCH): $(du -m --apparent-size "$img" | cut -f1) MiB raw, $(du -m "$img.xz" | cut -f1) MiB xz
"
    rm -f "$img"
}
