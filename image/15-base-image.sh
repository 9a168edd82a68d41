# Step 15: --base, an official Raspberry Pi OS Lite image. Its checksum is verified before
# anything else touches it.

base_from_image() {
    log "checking $BASE_IMG against --base-sha256"
    [ "$(sha256_of "$BASE_IMG")" = "$(printf '%s' "$BASE_SHA" | tr A-F a-f)" ] \
        || die "$BASE_IMG: SHA-256 does not match --base-sha256; refusing to use it"
    # Customising Raspberry Pi OS needs its own archive (archive.raspberrypi.com) for bind9's
    # dependencies and a PARTUUID-based cmdline; neither is built nor tested yet.
    die "--base (Raspberry Pi OS) is not supported yet: the checksum matched, but only the Debian base (no --base) is built and tested; see docs/image.md"
}
