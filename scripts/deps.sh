# Shared by test.sh and build.sh: system packages and the pinned virtualenv.
APT_PACKAGES="python3 python3-venv python3-dev gcc pkg-config libsystemd-dev
  bind9 bind9-dnsutils iproute2 nftables keepalived procps iputils-ping
  qemu-system-arm mtools openssh-client faketime"

install_deps() {
    missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq $missing >/dev/null
    fi
    # bind9's own service is not wanted on the test machine: the tests start named themselves.
    [ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
}
