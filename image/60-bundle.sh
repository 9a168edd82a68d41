# Step 60, only with --update-bundle: a dnspair update bundle for `dnspair upgrade`, instead of
# images. out/dnspair-update-VERSION-MACHINE.tar.gz (+ .sha256) holds the wheel of this tree,
# the wheels of its pinned dependencies for the target machine, constraints.txt and
# MANIFEST.json (the SHA-256 of each file). In: BUNDLE_ARCH BUNDLE_VERSION WORK REPO STAGE.

bundle_machine() {
    case "$1" in arm64) echo aarch64 ;; armhf) echo armv7l ;; native) uname -m ;; *) die "--arch $1: arm64, armhf or native" ;; esac
}

make_update_bundle() {
    machine=$(bundle_machine "$BUNDLE_ARCH")
    src=$WORK/dnspair-src top=$WORK/dnspair-update
    mkdir -p "$src" "$top/wheels"
    cp -r "$REPO/pyproject.toml" "$REPO/src" "$src/"
    [ -f "$REPO/README.md" ] && cp "$REPO/README.md" "$src/"
    if [ -n "$BUNDLE_VERSION" ]; then  # a local label (e.g. 0.1.0+site2): the node sees a new version
        printf '%s' "$BUNDLE_VERSION" | grep -q -E '^[0-9]+(\.[0-9]+)*([.+-][A-Za-z0-9.]+)?$' \
            || die "--bundle-version $BUNDLE_VERSION is not a version (e.g. 0.1.0+site2)"
        sed -i "s/^version = .*/version = \"$BUNDLE_VERSION\"/" "$src/pyproject.toml"
        sed -i "s/^__version__ = .*/__version__ = \"$BUNDLE_VERSION\"/" "$src/src/dnspair/__init__.py"
    fi
    "$HOST_PY" -m pip wheel -q --no-deps --no-build-isolation --disable-pip-version-check -w "$top/wheels" "$src" >&2 \
        || die "could not build the dnspair wheel from $REPO"
    whl=$(cd "$top/wheels" && ls dnspair-*.whl)
    version=$(printf '%s' "$whl" | cut -d- -f2)
    reqs=$("$HOST_PY" "$REPO/image/bundle.py" reqs "$REPO/pyproject.toml" "$machine" \
           $([ "$machine" = "$(uname -m)" ] && echo --native)) || die "cannot read the requirements"
    log "update bundle: dnspair $version for $machine: $(echo $reqs)"
    if [ "$machine" = "$(uname -m)" ]; then
        # Native: pip builds what has no wheel (systemd-python, lgpio) with this machine's compiler.
        "$HOST_PY" -m pip wheel -q --disable-pip-version-check -c "$REPO/constraints.txt" -w "$top/wheels" $reqs >&2 \
            || die "pip could not build the dependency wheels with constraints.txt"
    else
        plat=""
        for p in manylinux2014 manylinux_2_17 manylinux_2_28 manylinux_2_31 manylinux_2_34 linux; do
            plat="$plat --platform ${p}_$machine"
        done
        "$HOST_PY" -m pip download -q --disable-pip-version-check --only-binary=:all: $plat \
            --python-version 3.11 --implementation cp --abi cp311 -c "$REPO/constraints.txt" -d "$top/wheels" $reqs >&2 \
            || die "PyPI has no $machine wheel for one of: $(echo $reqs) (pinned in constraints.txt); build the bundle on a $machine machine with --arch native"
    fi
    cp "$REPO/constraints.txt" "$top/"
    "$HOST_PY" "$REPO/image/bundle.py" manifest "$top" "$version" "$machine"
    name=dnspair-update-$version-$machine.tar.gz
    tar -C "$WORK" --owner=0 --group=0 --numeric-owner -czf "$STAGE/$name" dnspair-update
    (cd "$STAGE" && sha256sum "$name" > "$name.sha256")
    BUNDLE_NAME=$name
}
