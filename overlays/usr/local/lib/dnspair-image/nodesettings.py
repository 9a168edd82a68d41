#!/usr/bin/python3
"""Per-node settings file on the FAT boot partition -> host name, hosts file, NetworkManager keyfile.

The file (/boot/firmware/dnspair-node.txt) can be edited from any computer before first boot.
build.sh writes it and applies it to the image with this same code; at boot,
dnspair-node-settings.service applies it again whenever its content changed.

Pure functions first (parse, render); `apply` is the only part that touches files.
Standard library only: it runs with Debian's python3, before the dnspair venv matters.
"""
import hashlib
import ipaddress
import os
import re
import subprocess
import sys
import uuid

KEYS = ("NODE", "INTERFACE", "ADDRESS", "GATEWAY", "DNS")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
STAMP = "var/lib/dnspair-image/node-settings.sha256"


class SettingsError(ValueError):
    pass


def parse(text):
    """KEY=VALUE lines -> validated dict. Tolerates CRLF, a BOM, comments, blank lines, quotes."""
    values = {}
    for n, raw in enumerate(text.lstrip("\ufeff").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().upper(), value.strip().strip("\"'")
        if not sep or key not in KEYS:
            raise SettingsError(f"line {n}: expected one of {', '.join(KEYS)} as KEY=VALUE, got {raw!r}")
        values[key] = value
    return validate(values)


def validate(values):
    for key in ("NODE", "INTERFACE", "ADDRESS"):
        if not values.get(key):
            raise SettingsError(f"{key} is missing")
    if not HOSTNAME_RE.match(values["NODE"]):
        raise SettingsError(f"NODE {values['NODE']!r} is not a valid host name")
    if not IFNAME_RE.match(values["INTERFACE"]):
        raise SettingsError(f"INTERFACE {values['INTERFACE']!r} is not an interface name")
    try:
        iface = ipaddress.IPv4Interface(values["ADDRESS"])
    except ValueError:
        raise SettingsError(f"ADDRESS {values['ADDRESS']!r} is not IPv4 ADDRESS/PREFIX") from None
    if "/" not in values["ADDRESS"]:
        raise SettingsError(f"ADDRESS {values['ADDRESS']!r} needs a prefix length, e.g. /24")
    gateway = values.get("GATEWAY", "")
    if gateway:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise SettingsError(f"GATEWAY {gateway!r} is not an IPv4 address") from None
        if gw not in iface.network or gw == iface.ip:
            raise SettingsError(f"GATEWAY {gateway} is not another host in {iface.network}")
    dns = [d for d in re.split(r"[,\s]+", values.get("DNS", "127.0.0.1")) if d]
    for d in dns:
        try:
            ipaddress.IPv4Address(d)
        except ValueError:
            raise SettingsError(f"DNS {d!r} is not an IPv4 address") from None
    return {"NODE": values["NODE"], "INTERFACE": values["INTERFACE"], "ADDRESS": str(iface),
            "GATEWAY": gateway, "DNS": dns}


def render_settings(s, comment=""):
    head = "# dnspair node settings. Edit before first boot from any computer; applied at boot\n" \
           "# whenever this file changes (see docs/image.md). Leave GATEWAY empty for none.\n"
    if comment:
        head += "".join(f"# {line}\n" for line in comment.splitlines())
    body = (f"NODE={s['NODE']}\nINTERFACE={s['INTERFACE']}\nADDRESS={s['ADDRESS']}\n"
            f"GATEWAY={s['GATEWAY']}\nDNS={','.join(s['DNS'])}\n")
    return (head + body).replace("\n", "\r\n")  # CRLF: the file is edited on any computer


def connection_name(s):
    return f"dnspair-{s['INTERFACE']}"


def render_keyfile(s):
    """NetworkManager keyfile: static address on the LAN interface, the node's own bind as resolver."""
    name = connection_name(s)
    uid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{s['NODE']}.dnspair")
    address = s["ADDRESS"] + (f",{s['GATEWAY']}" if s["GATEWAY"] else "")
    return (f"# Written by nodesettings.py from /boot/firmware/dnspair-node.txt; edit that file instead.\n"
            f"[connection]\nid={name}\nuuid={uid}\ntype=ethernet\ninterface-name={s['INTERFACE']}\n"
            f"autoconnect=true\n\n[ethernet]\n\n"
            f"[ipv4]\nmethod=manual\naddress1={address}\ndns={';'.join(s['DNS'])};\n\n"
            # IPv6 as any host on a dual-stack LAN (an IPv6 VIP needs it on), but the node's
            # resolver stays its own bind: no DNS servers from router advertisements.
            f"[ipv6]\nmethod=auto\nignore-auto-dns=true\n")


def render_hosts(s):
    ip = s["ADDRESS"].split("/")[0]
    return (f"127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"
            f"{ip}\t{s['NODE']}\n")


def outputs(s):
    """Relative path -> (content, mode) for everything a settings file decides."""
    return {
        "etc/hostname": (s["NODE"] + "\n", 0o644),
        "etc/hosts": (render_hosts(s), 0o644),
        f"etc/NetworkManager/system-connections/{connection_name(s)}.nmconnection":
            (render_keyfile(s), 0o600),
    }


def apply(settings_path, root="/"):
    """Writes what the settings file decides under root, if it changed since last time.

    Returns changed paths."""
    with open(settings_path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    stamp = os.path.join(root, STAMP)
    try:
        with open(stamp) as f:
            if f.read().strip() == digest:
                return []
    except FileNotFoundError:
        pass
    s = parse(raw.decode("utf-8"))
    conn_dir = os.path.join(root, "etc/NetworkManager/system-connections")
    if os.path.isdir(conn_dir):  # an interface rename must not leave the old connection active
        for old in os.listdir(conn_dir):
            if old.startswith("dnspair-") and old != connection_name(s) + ".nmconnection":
                os.unlink(os.path.join(conn_dir, old))
    changed = []
    for rel, (content, mode) in outputs(s).items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        changed.append(rel)
    os.makedirs(os.path.dirname(stamp), exist_ok=True)
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    return changed


def main(argv):
    if len(argv) not in (3, 4) or argv[1] not in ("apply", "check"):
        print("usage: nodesettings.py apply|check SETTINGS_FILE [ROOT]", file=sys.stderr)
        return 2
    root = argv[3] if len(argv) == 4 else "/"
    try:
        if argv[1] == "check":
            with open(argv[2], encoding="utf-8") as f:
                print(parse(f.read()))
            return 0
        changed = apply(argv[2], root)
    except (OSError, SettingsError) as e:
        print(f"nodesettings: {argv[2]}: {e}", file=sys.stderr)
        return 1
    if changed and root == "/":
        with open("/etc/hostname") as f:  # systemd set the old name earlier in boot
            subprocess.run(["hostname", f.read().strip()], check=False)
    print(f"nodesettings: applied {argv[2]}: {', '.join(changed) or 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
