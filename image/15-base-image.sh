# Step 15: --base, an official Raspberry Pi OS Lite 64-bit (bookworm) image. Its checksum is
# verified before anything else touches it; it is then decompressed into the work dir (the
# user's file is only read) and its two partitions are copied out: the FAT with mtools, the ext4
# root through a read-only loop mount that the EXIT trap unmounts (the loop frees itself).
# Not cached: each build starts from the image. In: BASE_IMG BASE_SHA WORK. Out: PIOS_ROOT
# (the root tree, FAT files in boot/firmware), BASE_DESC.

not_pios() { die "$BASE_IMG is not Raspberry Pi OS Lite 64-bit bookworm: $*"; }

# "START SIZE TYPE" per partition (sectors), from sfdisk's JSON; nothing if no MBR.
pios_partitions() {
    sfdisk --json "$1" 2>/dev/null | "$HOST_PY" -c '
import json, sys
try:
    t = json.load(sys.stdin)["partitiontable"]
except ValueError:  # sfdisk found no partition table at all
    sys.exit()
if t.get("label") == "dos":
    for p in t["partitions"]:
        print(p["start"], p["size"], p["type"])'
}

probe() { blkid -p -O "$(( $2 * 512 ))" -o value -s "$3" "$1" 2>/dev/null; }  # image, start sector, tag

# ELF class and machine of a binary: "2 b7" is 64-bit aarch64, "1 28" 32-bit ARM.
elf_kind() {
    c=$(od -An -t u1 -j 4 -N 1 "$1" 2>/dev/null | tr -d ' ')
    m=$(od -An -t x1 -j 18 -N 1 "$1" 2>/dev/null | tr -d ' ')
    echo "$c $m"
}

base_from_image() {
    log "checking $BASE_IMG against --base-sha256"
    BASE_SHA=$(printf '%s' "$BASE_SHA" | tr A-F a-f)
    [ "$(sha256_of "$BASE_IMG")" = "$BASE_SHA" ] \
        || die "$BASE_IMG: SHA-256 does not match --base-sha256; refusing to use it"
    BASE_DESC="Raspberry Pi OS $(basename "$BASE_IMG") (sha256 $BASE_SHA)"
    img=$WORK/base.img
    log "decompressing $(basename "$BASE_IMG")"
    xz -dc "$BASE_IMG" > "$img" 2>/dev/null || die "$BASE_IMG is not an xz-compressed image (.img.xz)"

    parts=$(pios_partitions "$img")
    [ "$(printf '%s\n' "$parts" | grep -c .)" = 2 ] || not_pios "expected an MBR with 2 partitions (FAT boot, ext4 root)"
    set -- $parts
    FAT_START=$1 ROOT_START=$4 ROOT_SECTORS=$5
    case "$3" in b|c) ;; *) not_pios "partition 1 is type $3, not FAT32" ;; esac
    [ "$6" = 83 ] || not_pios "partition 2 is type $6, not Linux"
    [ "$(probe "$img" "$FAT_START" TYPE)" = vfat ] || not_pios "partition 1 holds no FAT file system"
    [ "$(probe "$img" "$ROOT_START" TYPE)" = ext4 ] || not_pios "partition 2 holds no ext4 file system"

    mnt=$WORK/base-root
    mkdir -p "$mnt"
    on_exit "umount '$mnt'"
    mount -t ext4 -o ro,noload,loop,offset=$(( ROOT_START * 512 )),sizelimit=$(( ROOT_SECTORS * 512 )) "$img" "$mnt" \
        || die "could not mount the root partition of $BASE_IMG read-only (loop device)"
    [ -f "$mnt/etc/rpi-issue" ] || not_pios "no /etc/rpi-issue"
    case "$(elf_kind "$mnt/usr/bin/dpkg")" in
        "2 b7") ;;
        "1 28") die "$BASE_IMG is 32-bit Raspberry Pi OS (armhf): use the 64-bit Lite image; Raspbian's packages come from raspbian.raspberrypi.com, which is not Debian's armhf" ;;
        *) not_pios "/usr/bin/dpkg is not an arm64 program" ;;
    esac
    grep -q -x 'VERSION_CODENAME=bookworm' "$mnt/etc/os-release" 2>/dev/null \
        || not_pios "/etc/os-release does not say VERSION_CODENAME=bookworm"
    fat="$img@@$(( FAT_START * 512 ))"
    for f in config.txt cmdline.txt kernel8.img; do
        MTOOLS_SKIP_CHECK=1 mdir -b -i "$fat" "::$f" >/dev/null 2>&1 || not_pios "no $f on the boot partition"
    done

    PIOS_ROOT=$WORK/pios-root
    log "copying the Pi OS root and boot partitions out of the image"
    mkdir -p "$PIOS_ROOT"
    cp -a "$mnt/." "$PIOS_ROOT/" || die "could not copy the root partition of $BASE_IMG"
    umount "$mnt"
    # The FAT's own files only (anything hidden under the mount point on ext4 stays out).
    rm -rf "$PIOS_ROOT/boot/firmware"; mkdir -p "$PIOS_ROOT/boot/firmware"
    MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -n -i "$fat" '::/*' "$PIOS_ROOT/boot/firmware/" \
        || die "could not copy the boot partition of $BASE_IMG"
    rm -f "$img"
    FAT_MIB=512 FAT_LABEL=bootfs ROOT_LABEL=rootfs  # Pi OS's shape for step 40's make_disk
}

# --- Customising it (called from steps 20 and 40) ---

# Debian-base files that do not fit Pi OS: its fstab (by PARTUUID, image/pios/fstab instead), and
# the raspi-firmware and initramfs settings (Pi OS builds its own initramfs8 for its own kernel).
PIOS_OVERLAY_SKIP="--exclude=./etc/fstab --exclude=./etc/default/raspi-firmware --exclude=./etc/initramfs-tools"
# Pi OS's first-boot units: user prompt on the console, new host keys (we make them per node),
# SSH switched by a file on the FAT (ssh.service is enabled instead).
PIOS_FIRSTBOOT_UNITS="userconfig.service regenerate_ssh_host_keys.service sshswitch.service"

# What Pi OS lacks comes from Debian's archive only: apt is pointed at a sources list of its own,
# so raspi.list (archive.raspberrypi.com) is neither used nor changed.
pios_packages() {
    root=$1
    rm -f "$root/etc/resolv.conf"  # may be a symlink; install_dnspair writes a file there
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    want=""
    for p in $(grep -v -e '^#' -e '^[[:space:]]*$' "$REPO/image/pios/packages"); do
        dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' \
            || want="$want $p"
    done
    mkdir -p "$root/tmp/dnspair-apt.d"
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' "$MIRROR" "$SUITE" \
        "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" > "$root/tmp/dnspair-apt.list"
    # confold: the overlays' files are already laid and stay (bind's config is rendered later).
    apt="apt-get -q -o Dir::Etc::SourceList=/tmp/dnspair-apt.list -o Dir::Etc::SourceParts=/tmp/dnspair-apt.d
        -o Acquire::Languages=none -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef"
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
    if [ -n "$want" ]; then
        log "installing from Debian $SUITE into Pi OS:$want (apt under qemu-user)"
        in_chroot "$root" $apt update >&2 || die "apt-get update from $MIRROR failed inside the Pi OS image"
        in_chroot "$root" $apt install -y --no-install-recommends $want >&2 \
            || die "apt-get could not install$want from Debian $SUITE into the Pi OS image"
    fi
    # dphys-swapfile makes a swap file on the card at boot; the appliance has no swap.
    if dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${db:Status-Abbrev}' dphys-swapfile 2>/dev/null | grep -q '^ii'; then
        in_chroot "$root" dpkg --purge dphys-swapfile >&2 || die "could not purge dphys-swapfile from the Pi OS image"
    fi
    rm -f "$root/var/swap" "$root/usr/sbin/policy-rc.d"
    rm -rf "$root/tmp/dnspair-apt.list" "$root/tmp/dnspair-apt.d"
    in_chroot "$root" apt-get clean
}

pios_first_boot() {
    root=$1
    for u in $PIOS_FIRSTBOOT_UNITS; do
        if [ -e "$root/usr/lib/systemd/system/$u" ] || [ -e "$root/lib/systemd/system/$u" ] || [ -e "$root/etc/systemd/system/$u" ]; then
            in_chroot "$root" systemctl disable "$u" >&2
        fi
    done
    # Every password locked (Pi OS may have pi or rpi-first-boot-wizard): SSH keys are the only way in.
    awk -F: -v OFS=: '$2 !~ /^[!*]/ { $2 = "!" $2 } { print }' "$root/etc/shadow" > "$root/etc/shadow.new"
    chmod --reference="$root/etc/shadow" "$root/etc/shadow.new"
    chown --reference="$root/etc/shadow" "$root/etc/shadow.new"
    mv "$root/etc/shadow.new" "$root/etc/shadow"
}

# Per node: a disk id of its own, root and boot by that PARTUUID in cmdline.txt and fstab, and
# no init=.../firstboot (it would resize root and randomise the disk id behind fstab's back).
pios_node_boot() {  # $1 tree, $2 FAT files
    DISK_ID=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
    sed "s/@DISKID@/$DISK_ID/g" "$REPO/image/pios/fstab" > "$1/etc/fstab"
    set -f
    args="" root_done=0
    for a in $(tr -d '\r' < "$2/cmdline.txt"); do
        case "$a" in
            root=*) a="root=PARTUUID=$DISK_ID-02" root_done=1 ;;
            init=*firstboot*) continue ;;
        esac
        args="$args $a"
    done
    set +f
    [ "$root_done" = 1 ] || args="$args root=PARTUUID=$DISK_ID-02"
    # eth0 on every board, as on the Debian base and in the settings file.
    case "$args " in *" net.ifnames=0 "*) ;; *) args="$args net.ifnames=0" ;; esac
    printf '%s\n' "${args# }" > "$2/cmdline.txt"
}
