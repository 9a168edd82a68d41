# Helpers sourced by build.sh and the numbered steps. POSIX sh.

log() { printf '%s build: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

# Undo actions run in reverse order on exit, whether the build succeeded or not, so a failed
# build leaves no mounts, loop devices or half-written files behind.
CLEANUP=""
on_exit() { CLEANUP="$*
$CLEANUP"; }
run_cleanup() {
    printf '%s\n' "$CLEANUP" | while IFS= read -r cmd; do
        [ -n "$cmd" ] && eval "$cmd" >/dev/null 2>&1 || true
    done
    CLEANUP=""
}

# Kernel filesystems an ARM chroot needs for maintainer scripts, pip and named-checkconf.
chroot_mount() {
    for d in proc sys dev dev/pts; do mkdir -p "$1/$d"; done
    mount -t proc proc "$1/proc"; on_exit "umount -l '$1/proc'"
    mount -t sysfs sys "$1/sys"; on_exit "umount -l '$1/sys'"
    mount --bind /dev "$1/dev"; on_exit "umount -l '$1/dev'"
    mount -t devpts devpts "$1/dev/pts"; on_exit "umount -l '$1/dev/pts'"
}
chroot_umount() {
    for d in dev/pts dev sys proc; do umount -l "$1/$d" 2>/dev/null || true; done
}

# Runs a command inside the ARM tree (qemu-user through binfmt), with no services started.
in_chroot() {
    root=$1; shift
    LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# The nodes being built for arch $1, in build order.
nodes_of() {
    for n in $NODES; do if [ "$(arch_of "$n")" = "$1" ]; then printf '%s ' "$n"; fi; done
}

# The arch a node's image is built for: its --arch NODE=ARCH, else --arch's (arm64 by default).
arch_of() {
    for na in $NODE_ARCHS; do [ "${na%%=*}" = "$1" ] && { printf '%s\n' "${na#*=}"; return; }; done
    printf '%s\n' "$DEFAULT_ARCH"  # not $ARCH: build.sh's loop sets that to the arch being built
}
