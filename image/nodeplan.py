#!/usr/bin/python3
"""What build.sh needs from the pair's dnspair.yaml, per node: names, settings-file defaults, key path.

Pure function `node_settings` derives a node's settings from the config; the CLI prints results
for the shell steps. The full config check is `dnspair check-config`, run inside the ARM image.
"""
import argparse
import ipaddress
import os
import secrets
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "overlays", "usr", "local", "lib", "dnspair-image"))
import nodesettings  # noqa: E402

DEFAULT_KEY_FILE = "/etc/dnspair/authkey"


class PlanError(ValueError):
    pass


def load(path):
    import yaml  # host package python3-yaml; imported late so tests of pure parts need nothing
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise PlanError("not a YAML mapping")
    return config


def nodes(config):
    ns = config.get("nodes")
    if not isinstance(ns, dict) or not ns:
        raise PlanError("'nodes' must map node names to {addresses: [...]}")
    for name, spec in ns.items():
        if not isinstance(name, str) or not nodesettings.HOSTNAME_RE.match(name):
            raise PlanError(f"node name {name!r} is not a valid host name (the image uses it as one)")
        addrs = spec.get("addresses") if isinstance(spec, dict) else None
        if not isinstance(addrs, list) or not addrs:
            raise PlanError(f"nodes.{name}.addresses must be a non-empty list")
    return list(ns)


def vip_networks(config):
    vips = config.get("vips")
    if not isinstance(vips, list) or not vips:
        raise PlanError("'vips' must be a non-empty list")
    out = []
    for i, v in enumerate(vips):
        try:
            out.append((ipaddress.ip_interface(v["address"]), v.get("interface", "eth0")))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise PlanError(f"vips[{i}] needs address: ADDRESS/PREFIX (IPv4 or IPv6)") from None
    return out


def default_gateway(network, taken):
    """First host of the LAN, else the last, skipping addresses the pair itself uses; '' if both are."""
    hosts = list(network.hosts()) if network.num_addresses <= 65536 else []
    for candidate in (hosts[:1] + hosts[-1:]) if hosts else []:
        if candidate not in taken:
            return str(candidate)
    return ""


def node_settings(config, node, gateway=None):
    names = nodes(config)
    if node not in names:
        raise PlanError(f"node {node!r} is not in the config (nodes: {', '.join(names)})")
    try:
        ip = ipaddress.IPv4Address(str(config["nodes"][node]["addresses"][0]))
    except ValueError:
        raise PlanError(f"nodes.{node}.addresses[0] is not an IPv4 address") from None
    vips = vip_networks(config)
    # The node's own address is IPv4 (the settings file's ADDRESS); IPv6 VIPs live beside it.
    match = [(v, ifname) for v, ifname in vips if v.version == 4 and ip in v.network]
    if not match:
        raise PlanError(f"node {node} address {ip} is in no VIP's network; the image puts the node "
                        f"address and the VIPs on one LAN interface")
    vip, ifname = match[0]
    taken = {v.ip for v, _ in vips if v.version == 4}
    for n in names:
        for a in config["nodes"][n]["addresses"]:
            try:
                taken.add(ipaddress.IPv4Address(str(a)))
            except ValueError:
                pass
    gw = default_gateway(vip.network, taken) if gateway is None else gateway
    return nodesettings.validate({"NODE": node, "INTERFACE": ifname,
                                  "ADDRESS": f"{ip}/{vip.network.prefixlen}", "GATEWAY": gw,
                                  "DNS": "127.0.0.1"})


def key_file(config):
    path = config.get("key_file", DEFAULT_KEY_FILE)
    if not isinstance(path, str) or not path.startswith("/"):
        raise PlanError("key_file must be an absolute path")
    return path


def main(argv):
    p = argparse.ArgumentParser(prog="nodeplan.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ("nodes", "key-file", "settings"):
        sp = sub.add_parser(cmd)
        sp.add_argument("config")
        if cmd == "settings":
            sp.add_argument("node")
            sp.add_argument("--gateway")
    sub.add_parser("authkey")
    a = p.parse_args(argv)
    try:
        if a.cmd == "authkey":  # 32 random bytes, hex, one line: the pair's heartbeat secret
            print(secrets.token_hex(32))
            return 0
        config = load(a.config)
        if a.cmd == "nodes":
            print("\n".join(nodes(config)))
        elif a.cmd == "key-file":
            print(key_file(config))
        else:
            s = node_settings(config, a.node, "" if a.gateway == "none" else a.gateway)
            sys.stdout.write(nodesettings.render_settings(
                s, f"Built for node {a.node}. ADDRESS must stay listed under nodes.{a.node}.addresses\n"
                   f"in /etc/dnspair/dnspair.yaml on both nodes."))
    except (OSError, PlanError, nodesettings.SettingsError) as e:
        print(f"build.sh: error: {a.config if hasattr(a, 'config') else ''}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # yaml errors: one line, no traceback
        print(f"build.sh: error: {a.config}: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
