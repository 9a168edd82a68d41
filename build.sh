#!/bin/sh
# Bakes dnspair into one flashable Raspberry Pi image per node of the pair: out/NODE.img.xz
# with .sha256 and .bmap, and out/build-report.txt. Run as root on Debian bookworm (x86_64 or
# arm64). See docs/image.md.
set -eu
REPO=$(cd "$(dirname "$0")" && pwd)
. "$REPO/image/lib.sh"

usage() {
    cat <<'USAGE'
usage: build.sh --config dnspair.yaml --ssh-key KEY.pub [options]
  --config FILE          the pair's dnspair.yaml (the same file goes on both nodes)
  --ssh-key FILE         public key allowed to log in as root (no passwords exist)
  --arch arm64|armhf     arm64 (default): Pi 3, 4, Zero 2 W; armhf: Pi 2B (linux-image-armmp)
  --arch NODE=ARCH       this node's arch only (repeatable), e.g. --arch dns-pm02=armhf for a Pi 2B
  --base FILE.img.xz     start from an official Raspberry Pi OS Lite 64-bit (bookworm) image instead of Debian's
  --base-sha256 HEX      required with --base: the image's published SHA-256
  --node NAME            build only this node (repeatable); default: every node in the config
  --gateway IP|none      default gateway in the per-node settings (default: derived, see docs)
  --authkey FILE         reuse this pair's key (to rebuild one node); default: a new key per build
  --read-only-root       root file system read-only, writes go to RAM (overlay root)
  --out DIR              output directory (default: out/)
  --cache DIR            base rootfs cache (default: /var/cache/dnspair-build)
  --xz-level N           xz compression level 0-9 (default: 6)
  --image-url URL        where the .img.xz files will be downloaded from, for out/os_list.json
                         (Raspberry Pi Imager's custom repository); default: file:// of --out
USAGE
}

CONFIG="" SSH_KEY="" AUTHKEY_FILE="" DEFAULT_ARCH=arm64 NODE_ARCHS="" BASE_IMG="" BASE_SHA="" NODES="" GATEWAY="" READ_ONLY=0
OUT="$REPO/out" CACHE_DIR=${DNSPAIR_CACHE:-/var/cache/dnspair-build} XZ_LEVEL=6 IMAGE_URL=""
SUITE=bookworm MIRROR=http://deb.debian.org/debian SECURITY_MIRROR=http://deb.debian.org/debian-security

while [ $# -gt 0 ]; do
    case "$1" in
        --config|--ssh-key|--authkey|--arch|--base|--base-sha256|--node|--gateway|--out|--cache|--xz-level|--image-url)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --config) CONFIG=$2 ;; --ssh-key) SSH_KEY=$2 ;; --authkey) AUTHKEY_FILE=$2 ;;
                --arch) case "$2" in *=*) NODE_ARCHS="$NODE_ARCHS $2" ;; *) DEFAULT_ARCH=$2 ;; esac ;;
                --base) BASE_IMG=$2 ;; --base-sha256) BASE_SHA=$2 ;; --node) NODES="$NODES $2" ;;
                --gateway) GATEWAY=$2 ;; --out) OUT=$2 ;; --cache) CACHE_DIR=$2 ;; --xz-level) XZ_LEVEL=$2 ;;
                --image-url) IMAGE_URL=$2 ;;
            esac
            shift 2 ;;
        --read-only-root) READ_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# Bad input fails here, before anything slow or anything that needs cleaning up.
[ "$(id -u)" = 0 ] || die "must run as root (it builds file systems and ARM chroots)"
[ -n "$CONFIG" ] || die "--config FILE is required (the pair's dnspair.yaml)"
[ -f "$CONFIG" ] || die "config not found: $CONFIG"
[ -n "$SSH_KEY" ] || die "--ssh-key FILE is required: the image has no passwords, SSH keys are the only way in"
[ -f "$SSH_KEY" ] || die "SSH public key not found: $SSH_KEY"
grep -q -E '^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh.com) ' "$SSH_KEY" \
    || die "$SSH_KEY does not look like an SSH public key (.pub)"
if [ -n "$AUTHKEY_FILE" ]; then
    [ -f "$AUTHKEY_FILE" ] || die "key file not found: $AUTHKEY_FILE"
    grep -q -x -E '[0-9a-f]{64}' "$AUTHKEY_FILE" && [ "$(wc -l < "$AUTHKEY_FILE")" = 1 ] \
        || die "$AUTHKEY_FILE is not a dnspair key (one line of 64 hex digits, as dnspair keygen writes)"
    AUTHKEY_FILE=$(readlink -f "$AUTHKEY_FILE")
fi
for a in "$DEFAULT_ARCH" $(for na in $NODE_ARCHS; do printf '%s ' "${na#*=}"; done); do
    case "$a" in arm64|armhf) ;; *) die "--arch must be arm64 or armhf (or NODE=arm64|armhf), not $a" ;; esac
done
case "$XZ_LEVEL" in [0-9]) ;; *) die "--xz-level must be 0-9" ;; esac
case "$IMAGE_URL" in ""|http://?*|https://?*|file:///*) ;; *) die "--image-url must be an http://, https:// or file:/// URL, not $IMAGE_URL" ;; esac
if [ -n "$BASE_IMG" ]; then
    [ -f "$BASE_IMG" ] || die "base image not found: $BASE_IMG"
    printf '%s' "$BASE_SHA" | grep -q -E '^[0-9a-fA-F]{64}$' || die "--base needs --base-sha256 with the image's 64-hex-digit SHA-256"
    # 32-bit Pi OS (Raspbian) needs raspbian.raspberrypi.com's armhf archive, not Debian's armhf.
    case " $DEFAULT_ARCH $NODE_ARCHS " in *armhf*) die "--base takes the 64-bit Raspberry Pi OS Lite image only (--arch arm64); 32-bit Pi OS needs raspbian.raspberrypi.com, which is not Debian's armhf" ;; esac
    # Pi OS's own initramfs8 lacks the overlay-root script, and rebuilding it is not done here.
    [ "$READ_ONLY" = 0 ] || die "--read-only-root is not supported with --base (Pi OS's initramfs has no overlay-root script); use the Debian base"
fi
CONFIG=$(readlink -f "$CONFIG") SSH_KEY=$(readlink -f "$SSH_KEY")
mkdir -p "$OUT"; OUT=$(readlink -f "$OUT")
[ -n "$IMAGE_URL" ] || IMAGE_URL="file://$OUT"
# Every image holds the pair's key, its SSH host keys and rndc.key: the output is as secret as
# they are, whatever the caller's umask (docs/security.md).
[ ! -k "$OUT" ] || die "--out $OUT is a shared directory (sticky bit, like /tmp); give one of its own: the images hold the pair's secrets"
chmod 0700 "$OUT"

for step in "$REPO"/image/[0-9][0-9]-*.sh; do . "$step"; done

START=$(date +%s) IMG_SIZES=""
host_tools
ALL_NODES=$("$HOST_PY" "$REPO/image/nodeplan.py" nodes "$CONFIG") || exit 1
[ -n "$NODES" ] || NODES=$ALL_NODES
for n in $NODES; do  # every node's settings must derive cleanly before the slow part
    "$HOST_PY" "$REPO/image/nodeplan.py" settings "$CONFIG" "$n" ${GATEWAY:+--gateway "$GATEWAY"} >/dev/null || exit 1
done
for na in $NODE_ARCHS; do
    printf '%s\n' $ALL_NODES | grep -q -x -F "${na%%=*}" || die "--arch $na: ${na%%=*} is not a node in $CONFIG"
done
ARCHES=$(for n in $NODES; do arch_of "$n"; done | awk '!seen[$0]++')
for a in $ARCHES; do host_can_run "$a"; done

trap 'run_cleanup' EXIT
trap 'exit 130' INT TERM
WORK=$(mktemp -d "${DNSPAIR_WORKDIR:-/var/tmp}/dnspair-build.XXXXXX")  # ~3 GB while building
on_exit "rm -rf --one-file-system '$WORK'"
# Outputs are staged and published together at the end: a failed build must not leave one
# new node image next to an old one whose key differs.
STAGE=$(mktemp -d "$OUT/.partial.XXXXXX")
on_exit "rm -rf '$STAGE'"

make_authkey
make_wheel
# One root file system per arch (base, dnspair, checks), then that arch's nodes from it.
for ARCH in $ARCHES; do
    if [ -n "$BASE_IMG" ]; then base_from_image; else build_base; make_extras; fi
    make_rootfs
    verify_rootfs
    for n in $(nodes_of "$ARCH"); do make_node "$n"; done
    report_arch
    rm -rf --one-file-system "$ROOT"
done
write_report
write_oslist
chmod 0600 "$STAGE"/*
for f in "$STAGE"/*; do mv -f "$f" "$OUT/"; done
log "done in $(( $(date +%s) - START ))s: $(for n in $NODES; do printf '%s ' "$OUT/$n.img.xz"; done)"
log "$OUT is mode 0700 and its files 0600: an image holds the pair's key, SSH host keys and rndc.key, so it is as secret as the key"
