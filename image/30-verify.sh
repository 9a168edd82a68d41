# Step 30: checks inside the ARM root filesystem, with the image's own binaries. A failure
# stops the build: an image that fails them is not written.
# In: ROOT REPO. Out: PIP_VERSIONS (name==version lines of the venv).

# Every distribution dnspair pulls in must be installed at exactly its constraints.txt pin.
VERSION_CHECK='
import importlib.metadata as md, re, sys
from pip._vendor.packaging.requirements import Requirement
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if "==" in line:
        name, version = line.split("==")
        pins[canon(name)] = version.strip()
seen, todo, bad, out = set(), ["dnspair"], [], []
while todo:
    name = canon(todo.pop())
    if name in seen:
        continue
    seen.add(name)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        bad.append(f"{name} is not installed"); continue
    want = pins.get(name)
    if name == "dnspair":
        out.append(f"{name}=={dist.version}")
    elif want is None:  # not in constraints.txt at all (e.g. setuptools from the venv): say so
        out.append(f"{name}=={dist.version} (not pinned in constraints.txt)")
    elif want != dist.version:
        bad.append(f"{name} is {dist.version}, constraints.txt says {want}")
    else:
        out.append(f"{name}=={dist.version}")
    for req in map(Requirement, dist.requires or []):
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            todo.append(req.name)
print("\n".join(sorted(out)))
if bad:
    sys.exit("version check: " + "; ".join(bad))
'

verify_rootfs() {
    log "checking the image: versions, named-checkconf, dnspair check-config, systemd-analyze verify"
    cp "$REPO/constraints.txt" "$ROOT/tmp/constraints.txt"
    PIP_VERSIONS=$(in_chroot "$ROOT" /opt/dnspair/bin/python -c "$VERSION_CHECK" /tmp/constraints.txt) \
        || die "the image's Python packages differ from constraints.txt (see above)"
    rm -f "$ROOT/tmp/constraints.txt"
    in_chroot "$ROOT" named-checkconf -z >&2 || die "named-checkconf failed inside the image"
    in_chroot "$ROOT" /usr/local/bin/dnspair check-config --key /etc/dnspair/dnspair.yaml >&2 \
        || die "dnspair check-config rejected $CONFIG inside the image"
    units="/etc/systemd/system/dnspair-node-settings.service /etc/systemd/system/dnspair-dns-clock.path /etc/systemd/system/dnspair-dns-clock.service"
    units="$units /etc/systemd/system/dnspair-firewall.service /etc/systemd/system/dnspair-firewall.path"
    [ -f "$ROOT/etc/systemd/system/dnspair.service" ] && units="$units /etc/systemd/system/dnspair.service"
    in_chroot "$ROOT" env SYSTEMD_LOG_LEVEL=warning systemd-analyze verify $units >&2 \
        || die "systemd-analyze verify failed inside the image: $units"
    chroot_umount "$ROOT"
}
