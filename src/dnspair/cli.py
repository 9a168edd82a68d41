"""The `dnspair` command."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys

from . import __version__
from .core.config import ConfigError

DEFAULT_CONFIG = "/etc/dnspair/dnspair.yaml"


def fail(msg: str, code: int = 1) -> int:
    print(f"dnspair: {msg}", file=sys.stderr)
    return code


def _socket_path(config_path: str) -> str:
    from .core.config import Control
    from .shell.files import load_config
    if not os.path.exists(config_path) and config_path == DEFAULT_CONFIG:
        return Control().socket
    return load_config(config_path).control.socket


def _ask(args, req: dict) -> dict:
    from .shell.control import request
    reply = request(_socket_path(args.config), req)
    if not reply.get("ok"):
        raise RuntimeError(reply.get("error", "the daemon refused"))
    return reply


def cmd_daemon(args) -> int:
    import asyncio

    from .daemon import Daemon
    from .shell import files, systemd
    cfg = files.load_config(args.config)
    node = args.node or socket.gethostname().split(".")[0]
    if node not in cfg.nodes:
        return fail(f"this host is {node!r}, which is not a node in {args.config} "
                    f"(nodes: {', '.join(cfg.node_names)}); use --node", 2)
    key = files.load_key(cfg.key_file)
    systemd.setup_logging(args.verbose)
    # The libraries' objects live as long as the process: keep the collector from walking
    # them again and again (at rest that walk was most of the daemon's CPU).
    import gc
    gc.collect()
    gc.freeze()
    return asyncio.run(Daemon(cfg, node, key, args.config).run())


def cmd_status(args) -> int:
    st = _ask(args, {"cmd": "status"})["status"]
    if args.json:
        print(json.dumps(st, indent=2, sort_keys=True))
    else:
        from .surfaces.render import text
        print(text(st))
    return 0


def cmd_history(args) -> int:
    """From the daemon; if it is not running, from the state file it left."""
    from .shell.control import ControlError
    try:
        items = _ask(args, {"cmd": "history"})["history"]
    except ControlError as e:
        from .shell import state
        from .shell.files import load_config
        if not os.path.exists(args.config):
            raise
        cfg = load_config(args.config)
        node = args.node or socket.gethostname().split(".")[0]
        try:
            items = state.read_history(cfg.state_dir, node)
        except (OSError, ValueError) as e2:
            raise RuntimeError(f"{e}; and no readable history for {node} in {cfg.state_dir} "
                               f"({getattr(e2, 'strerror', None) or e2})") from None
        print(f"dnspair: {e}; the history {node} kept in {cfg.state_dir}:", file=sys.stderr)
    if args.json:
        print(json.dumps(items, indent=2, sort_keys=True))
    else:
        from .surfaces.render import history
        print(history(items) or "no transitions recorded")
    return 0


def cmd_simple(args) -> int:
    req = {"cmd": args.cmd}
    if getattr(args, "vip", None):
        req["vip"] = args.vip
    if getattr(args, "node", None):
        req["node"] = args.node
    print(_ask(args, req)["message"])
    return 0


def cmd_keygen(args) -> int:
    from .shell.files import write_key
    try:
        write_key(args.out, args.force)
    except FileExistsError:
        return fail(f"{args.out} exists; use --force to replace it (both nodes need the same key)")
    print(f"wrote a new key to {args.out} (mode 0600); copy it to the other node")
    return 0


def cmd_check_config(args) -> int:
    from .shell.files import load_config, load_key
    cfg = load_config(args.file)
    if args.node and args.node not in cfg.nodes:
        names = ", ".join(cfg.node_names)
        return fail(f"{args.file}: node {args.node!r} is not in the config (nodes: {names})")
    if args.key:
        load_key(cfg.key_file)
        problems = node_problems(cfg, args.file)
        if problems:
            for p in problems:
                print(f"dnspair: {p}", file=sys.stderr)
            return 2
    print(f"{args.file}: ok (cluster {cfg.cluster}, nodes {' and '.join(cfg.node_names)}, "
          f"{len(cfg.vips)} VIPs, digest {cfg.digest})")
    return 0


def node_problems(cfg, path: str) -> list[str]:
    """What this node itself must have for the config to work: the control groups, and a
    control socket path that is a socket or absent."""
    import grp

    from .shell.control import ControlError, check_socket_path
    out = []
    for key, name in (("admin_group", cfg.control.admin_group),
                      ("monitor_group", cfg.control.monitor_group)):
        try:
            grp.getgrnam(name)
        except KeyError:
            out.append(f"{path}: control.{key}: group {name!r} does not exist on this host "
                       f"(groupadd --system {name})")
    try:
        check_socket_path(cfg.control.socket)
    except ControlError as e:
        out.append(f"{path}: control.socket: {e}")
    return out


def cmd_firewall(args) -> int:
    import subprocess

    from .core import firewall
    from .shell.files import load_config
    cfg = load_config(args.config)
    node = args.node or socket.gethostname().split(".")[0]
    if node not in cfg.nodes:
        return fail(f"this host is {node!r}, which is not a node in {args.config} "
                    f"(nodes: {', '.join(cfg.node_names)}); use --node", 2)
    include = args.include_dir or None
    if not args.apply:
        print(firewall.ruleset(cfg, node, include, args.config), end="")
        return 0

    def nft(text: str, *flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(["nft", *flags, "-f", "-"], input=text, capture_output=True, text=True)

    import shutil
    if not shutil.which("nft"):
        return fail("firewall: nft not found (install nftables)")

    rc = 0
    if not cfg.firewall.enabled:
        subprocess.run(["nft", "delete", "table", "inet", firewall.TABLE], capture_output=True)
        print(f"firewall: off in {args.config} (firewall.enabled: false); table inet "
              f"{firewall.TABLE} removed")
    else:
        text = firewall.ruleset(cfg, node, include, args.config)
        r = nft(text)
        if r.returncode != 0 and include:
            # Your own rules broke the load: ours go in without them, nothing half-applied.
            why = (r.stderr.strip().splitlines() or ["nft failed"])[0]
            r2 = nft(firewall.ruleset(cfg, node, None, args.config))
            if r2.returncode != 0:
                return fail(f"firewall: nft refused the generated ruleset: {r2.stderr.strip()[:300]}")
            print(f"dnspair: firewall: own rules in {include} not applied: {why}", file=sys.stderr)
            rc = 1
        elif r.returncode != 0:
            return fail(f"firewall: nft refused the generated ruleset: {r.stderr.strip()[:300]}")
        print(f"firewall: applied for {node} (table inet {firewall.TABLE}; drops counted in "
              f"`nft list counter inet {firewall.TABLE} dropped`)")
    if args.unit and os.path.isdir("/run/systemd/system"):  # systemd runs this machine
        allow = " ".join(firewall.daemon_peers(cfg, node))
        r = subprocess.run(["systemctl", "set-property", "--runtime", args.unit, "IPAddressDeny=any",
                            "IPAddressAllow=", f"IPAddressAllow={allow}"], capture_output=True, text=True)
        if r.returncode != 0:
            return fail(f"firewall: could not set {args.unit}'s IPAddressAllow: {r.stderr.strip()[:200]}")
        print(f"{args.unit}: IPAddressDeny=any, IPAddressAllow={allow}")
    return rc


def cmd_release(args) -> int:
    """For the unit's ExecStopPost: after a crash no VIP may stay behind."""
    from .shell.files import load_config
    from .shell.netlink import release_all
    cfg = load_config(args.config)
    for address in release_all(cfg.vips):
        print(f"released {address}")
    return 0


def _node(args, cfg) -> str:
    node = getattr(args, "node", None) or socket.gethostname().split(".")[0]
    if node not in cfg.nodes:
        raise RuntimeError(f"this host is {node!r}, which is not a node in {args.config} "
                           f"(nodes: {', '.join(cfg.node_names)}); use --node")
    return node


def _dns_config(args):
    from .shell.files import load_config, load_key
    cfg = load_config(args.config)
    return cfg, load_key(cfg.key_file)


def cmd_render(args) -> int:
    """Write this node's bind files (the image build, and the first step of `reload`)."""
    from .shell import bindfiles
    cfg, key = _dns_config(args)
    node = _node(args, cfg)
    done = bindfiles.apply(cfg, node, key, root=args.root or "")
    for path in done.written + done.seeded:
        print(f"wrote {path}")
    if done.catalog_serial is not None:
        print(f"wrote the catalog zone, serial {done.catalog_serial}")
    return 0


def cmd_reload(args) -> int:
    """Render, then `rndc reconfig` (options, new and removed zones) and `rndc reload` of the
    catalog zone when its member list changed. bind is never restarted."""
    from .core import bindconf
    from .core.config import CATALOG_ZONE
    from .shell import bindfiles, zones
    cfg, key = _dns_config(args)
    node = _node(args, cfg)
    done = bindfiles.apply(cfg, node, key)
    bindfiles.rndc(cfg, "reconfig")
    if done.catalog_serial is not None:
        bindfiles.rndc(cfg, "reload", CATALOG_ZONE)
    if cfg.dns is not None and bindfiles.primary(cfg) == node:
        # Zones bind already owned: the file's records are there too after a reload.
        seeded = set(done.seeded)
        for z in cfg.dns.zones:
            if bindconf.zone_path(cfg.bind, z.name) not in seeded:
                try:
                    zones.ensure(cfg, key, z.name)
                except zones.ZoneError as e:
                    return fail(str(e))
    changed = len(done.written) + len(done.seeded)
    print(f"bind reconfigured on {node} ({changed} file(s) changed"
          + (f", catalog serial {done.catalog_serial}" if done.catalog_serial is not None else "")
          + f", config digest {done.digest})")
    return 0


def cmd_records(args) -> int:
    from .shell import zones
    cfg, key = _dns_config(args)
    try:
        if args.action == "add":
            print(zones.add(cfg, key, args.name, args.type, args.data, args.ttl))
        elif args.action == "delete":
            print(zones.delete(cfg, key, args.name, args.type, args.data))
        else:
            print("\n".join(zones.listing(cfg, key, args.zone)))
    except zones.ZoneError as e:
        return fail(str(e))
    return 0


def cmd_promote(args) -> int:
    from .shell import promote, zones
    cfg, key = _dns_config(args)
    try:
        print(promote.promote(cfg, _node(args, cfg), key, args.force))
    except zones.ZoneError as e:
        return fail(str(e))
    return 0


def cmd_upgrade(args) -> int:
    """Upgrade this node while the peer serves both VIPs (core/upgrade.py has the order)."""
    import time

    from .core import upgrade as plan
    from .shell import upgrade as up
    from .shell.files import load_config
    cfg = load_config(args.config)
    host = up.Host(cfg, args.config)
    if args.schedule:
        return _schedule(args, cfg)
    now = time.monotonic()
    job = host.load(now)
    bounds = plan.Bounds.of(cfg, args.healthy_within or cfg.upgrade.healthy_within)
    if args.abort:
        if job is None:
            return fail("no upgrade under way")
        errors = [e for e in (host.command("unstandby"), host.command("maintenance", "off")) if e]
        host.finish(plan.Job(**{**job.__dict__, "phase": "failed", "result": "aborted by the operator"}))
        print("upgrade aborted: back in service" if not errors else f"upgrade aborted; {'; '.join(errors)}")
        return 1 if errors else 0
    if args.resume:
        if job is None:
            print("no upgrade to resume")
            return 0
        return up.run(host, plan.resume(job, now), bounds)
    if job is not None:
        return fail(f"an upgrade is under way (phase {job.phase}): `dnspair upgrade --resume` or --abort")
    bundle, version = args.bundle, None
    if bundle == "auto":
        st = host.status()
        running = (st or {}).get("daemon", {}).get("version")
        bundle = up.find_bundle(args.bundle_dir or f"{cfg.state_dir}/updates", running)
        if bundle is None and args.no_apt:
            print("no new bundle to install")
            return 0
    if bundle:
        try:
            version = up.read_bundle(bundle).version
        except up.BundleError as e:
            return fail(str(e))
        bundle = os.path.abspath(bundle)
    started = plan.start(host.status(), not args.no_apt, bundle, version, now)
    if isinstance(started, str):
        return fail(f"upgrade refused: {started}")
    return up.run(host, started, bounds)


def _schedule(args, cfg) -> int:
    """Write (or remove) dnspair-upgrade.timer for this node's upgrade.schedule entry."""
    import subprocess

    from .core.config import timer_unit
    from .shell.state import write_atomic
    node = args.node or socket.gethostname().split(".")[0]
    if node not in cfg.nodes:
        return fail(f"this host is {node!r}, which is not a node in {args.config}; use --node", 2)
    path = os.environ.get("DNSPAIR_UPGRADE_TIMER", "/etc/systemd/system/dnspair-upgrade.timer")
    calendar = cfg.upgrade.calendar(node)
    systemctl = os.environ.get("DNSPAIR_UPGRADE_SYSTEMCTL", "systemctl")
    if calendar:
        write_atomic(path, timer_unit(node, calendar))
        os.chmod(path, 0o644)
        cmds = [[systemctl, "daemon-reload"], [systemctl, "enable", "--now", "dnspair-upgrade.timer"]]
        what = f"{node} upgrades on {calendar!r} ({path})"
    else:
        if os.path.exists(path):
            os.unlink(path)
        cmds = [[systemctl, "disable", "--now", "dnspair-upgrade.timer"], [systemctl, "daemon-reload"]]
        what = f"{node} has no upgrade.schedule: no timer"
    if not args.no_reload:
        for c in cmds:
            subprocess.run(c, check=False)
    print(what)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dnspair", description="DNS high-availability pair supervisor")
    p.add_argument("--version", action="version", version=f"dnspair {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help, config=True):
        sp = sub.add_parser(name, help=help, description=help)
        if config:
            sp.add_argument("--config", default=DEFAULT_CONFIG,
                            help=f"config file (default {DEFAULT_CONFIG})")
        sp.set_defaults(fn=fn, cmd=name)
        return sp

    sp = add("daemon", cmd_daemon, "run the supervisor in the foreground")
    sp.add_argument("--node", help="this node's name (default: the host name)")
    sp.add_argument("-v", "--verbose", action="store_true")
    add("status", cmd_status, "show the pair's state").add_argument("--json", action="store_true",
                                                                     help="stable JSON (docs/status.md)")
    sp = add("history", cmd_history, "show the last 200 transitions (kept across restarts)")
    sp.add_argument("--json", action="store_true", help="as JSON (docs/status.md, history)")
    sp.add_argument("--node", help="whose state file to read if the daemon is down (default: host name)")
    add("cleanup", cmd_simple, "forget failures and let VIPs go home").add_argument(
        "vip", nargs="?", help="only this VIP")
    add("standby", cmd_simple, "drain this node's VIPs to the peer (maintenance)")
    add("unstandby", cmd_simple, "take VIPs again after standby")
    sp = add("move", cmd_simple, "pin a VIP to a node until `dnspair cleanup VIP`")
    sp.add_argument("vip")
    sp.add_argument("node")
    sp = add("keygen", cmd_keygen, "write a new random heartbeat key", config=False)
    sp.add_argument("--out", default="/etc/dnspair/authkey")
    sp.add_argument("--force", action="store_true", help="replace an existing key")
    sp = add("check-config", cmd_check_config, "validate a config file", config=False)
    sp.add_argument("file")
    sp.add_argument("--node", help="also check that this node is in it")
    sp.add_argument("--key", action="store_true",
                    help="also check this node: the key file and its permissions, "
                    "the control groups, the control socket path")
    sp = add("firewall", cmd_firewall, "print this node's nftables ruleset (or --apply it)")
    sp.add_argument("--node", help="this node's name (default: the host name)")
    sp.add_argument("--apply", action="store_true",
                    help="load it with nft (atomically) and set the daemon unit's IP allow list")
    from .core.firewall import INCLUDE_DIR
    sp.add_argument("--include-dir", default=INCLUDE_DIR,
                    help=f"your own rules, *.nft files (default {INCLUDE_DIR}; '' for none)")
    sp.add_argument("--unit", default="dnspair.service",
                    help="unit whose IPAddressAllow= is set under systemd ('' for none)")
    sp = add("upgrade", cmd_upgrade, "update this node (apt, dnspair bundle, reboot) while the peer serves")
    sp.add_argument("--bundle", help="a dnspair update bundle (build.sh --update-bundle), or 'auto': "
                    "the newest in --bundle-dir that is not running")
    sp.add_argument("--bundle-dir", help="where --bundle auto looks (default STATE_DIR/updates)")
    sp.add_argument("--no-apt", action="store_true", help="no apt-get upgrade, the bundle only")
    sp.add_argument("--healthy-within", type=float, help="seconds (default upgrade.healthy_within: 300)")
    sp.add_argument("--resume", action="store_true", help="continue the upgrade under way (after its reboot)")
    sp.add_argument("--abort", action="store_true", help="give up the upgrade under way: unstandby")
    sp.add_argument("--schedule", action="store_true",
                    help="write this node's dnspair-upgrade.timer from upgrade.schedule and enable it")
    sp.add_argument("--node", help="with --schedule: this node's name (default: the host name)")
    sp.add_argument("--no-reload", action="store_true", help="with --schedule: do not call systemctl")
    add("release", cmd_release, "remove every configured VIP from this host (unit stop hook)")
    sp = add("reload", cmd_reload, "apply dnspair.yaml's dns settings to bind (rndc reconfig, no restart)")
    sp.add_argument("--node", help="this node's name (default: the host name)")

    rec = sub.add_parser("records", help="the local zones' records (either node; changes go to the primary)")
    rsub = rec.add_subparsers(dest="action", required=True, metavar="ACTION")

    def radd(name, help):
        sp = rsub.add_parser(name, help=help, description=help)
        sp.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
        sp.set_defaults(fn=cmd_records)
        return sp
    sp = radd("add", "add a record, e.g. `dnspair records add nas.home.arpa A 192.0.2.20`")
    sp.add_argument("name")
    sp.add_argument("type")
    sp.add_argument("data", help="the record's data (quote it if it has spaces, e.g. '10 mail.home.arpa.')")
    sp.add_argument("--ttl", type=int, help="seconds (default dns.ttl)")
    sp = radd("delete", "delete a name's records (all, of one TYPE, or the one with DATA)")
    sp.add_argument("name")
    sp.add_argument("type", nargs="?")
    sp.add_argument("data", nargs="?")
    sp = radd("list", "the records this node's bind serves")
    sp.add_argument("zone", nargs="?")

    d = sub.add_parser("dns", help="the pair's DNS service: render bind's files, promote a secondary")
    dsub = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, fn, help in (("render", cmd_render, "write this node's bind files from the config"),
                           ("promote", cmd_promote, "make this node primary for the local zones "
                            "(refused while the old primary's bind answers)")):
        sp = dsub.add_parser(name, help=help, description=help)
        sp.add_argument("--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
        sp.add_argument("--node", help="this node's name (default: the host name)")
        sp.set_defaults(fn=fn)
    dsub.choices["render"].add_argument("--root", help="write under this directory (an image tree)")
    dsub.choices["promote"].add_argument(
        "--force", action="store_true",
        help="promote although the old primary's bind answers (two primaries until it stops); "
             "never while it holds newer serials")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .shell.control import ControlError
    try:
        return args.fn(args)
    except ConfigError as e:
        for problem in e.problems:
            print(f"dnspair: {problem}", file=sys.stderr)
        return 2
    except (ControlError, RuntimeError) as e:
        return fail(str(e))
    except PermissionError as e:
        return fail(f"permission denied: {e.filename or e}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
