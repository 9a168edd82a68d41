"""The per-node settings file (FAT partition) and what build.sh derives from dnspair.yaml. Pure, fast."""
import os
import stat

import pytest

from imagehelpers import nodeplan, nodesettings

EXAMPLE_CONFIG = {
    "cluster": "clst-01",
    "nodes": {"dns-pm01": {"addresses": ["192.0.2.1"]}, "dns-pm02": {"addresses": ["192.0.2.2"]}},
    "vips": [
        {"address": "192.0.2.11/24", "interface": "eth0", "prefers": {"dns-pm01": 200, "dns-pm02": 100}},
        {"address": "192.0.2.12/24", "interface": "eth0", "prefers": {"dns-pm01": 100, "dns-pm02": 200}},
    ],
}


def test_node_settings_derive_prefix_interface_and_a_free_gateway():
    s = nodeplan.node_settings(EXAMPLE_CONFIG, "dns-pm02")
    # .1 is dns-pm01 itself, so the derived gateway is the network's last host.
    assert s == {"NODE": "dns-pm02", "INTERFACE": "eth0", "ADDRESS": "192.0.2.2/24",
                 "GATEWAY": "192.0.2.254", "DNS": ["127.0.0.1"]}


def test_gateway_given_wins_and_empty_means_none():
    assert nodeplan.node_settings(EXAMPLE_CONFIG, "dns-pm01", "192.0.2.100")["GATEWAY"] == "192.0.2.100"
    assert nodeplan.node_settings(EXAMPLE_CONFIG, "dns-pm01", "")["GATEWAY"] == ""


def test_default_gateway_prefers_first_host_when_free():
    import ipaddress
    net = ipaddress.IPv4Network("192.0.2.0/24")
    assert nodeplan.default_gateway(net, {ipaddress.IPv4Address("192.0.2.5")}) == "192.0.2.1"
    taken = {ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.254")}
    assert nodeplan.default_gateway(net, taken) == ""


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["nodes"].pop("dns-pm01"), "not in the config"),
    (lambda c: c["nodes"]["dns-pm01"].update(addresses=["198.51.100.1"]), "in no VIP's network"),
    (lambda c: c["nodes"]["dns-pm01"].update(addresses=["fe80::1"]), "not an IPv4 address"),
    (lambda c: c.update(vips=[]), "'vips' must be a non-empty list"),
    (lambda c: c["nodes"].update({"Bad_Name": {"addresses": ["192.0.2.3"]}}), "not a valid host name"),
])
def test_bad_configs_get_one_clear_error(mutate, message):
    import copy
    config = copy.deepcopy(EXAMPLE_CONFIG)
    mutate(config)
    with pytest.raises(nodeplan.PlanError, match=message):
        nodeplan.node_settings(config, "dns-pm01")


def test_settings_file_round_trips_and_survives_a_windows_editor():
    s = nodeplan.node_settings(EXAMPLE_CONFIG, "dns-pm01")
    text = nodesettings.render_settings(s, "a comment")
    assert "\r\n" in text
    assert nodesettings.parse(text) == s
    edited = "\ufeff" + text.replace("ADDRESS=192.0.2.1/24", 'ADDRESS = "192.0.2.7/24"')
    assert nodesettings.parse(edited)["ADDRESS"] == "192.0.2.7/24"


@pytest.mark.parametrize("text, message", [
    ("NODE=a\nINTERFACE=eth0\n", "ADDRESS is missing"),
    ("NODE=a\nINTERFACE=eth0\nADDRESS=192.0.2.1\n", "needs a prefix length"),
    ("NODE=a\nINTERFACE=eth0\nADDRESS=192.0.2.1/24\nGATEWAY=198.51.100.1\n", "not another host"),
    ("NODE=a\nINTERFACE=eth0\nADDRESS=192.0.2.1/24\nHOSTNAME=x\n", "line 4"),
    ("NODE=-a\nINTERFACE=eth0\nADDRESS=192.0.2.1/24\n", "not a valid host name"),
    ("NODE=a\nINTERFACE=eth0\nADDRESS=192.0.2.1/24\nDNS=127.0.0.1,nope\n", "DNS 'nope'"),
])
def test_bad_settings_are_refused(text, message):
    with pytest.raises(nodesettings.SettingsError, match=message):
        nodesettings.parse(text)


def test_keyfile_is_a_static_networkmanager_profile():
    s = nodesettings.parse("NODE=dns-pm01\nINTERFACE=eth0\nADDRESS=192.0.2.1/24\nGATEWAY=192.0.2.254\n")
    k = nodesettings.render_keyfile(s)
    assert "interface-name=eth0\n" in k
    assert "method=manual\naddress1=192.0.2.1/24,192.0.2.254\ndns=127.0.0.1;\n" in k
    no_gw = nodesettings.render_keyfile(dict(s, GATEWAY=""))
    assert "address1=192.0.2.1/24\n" in no_gw
    # IPv6 on (an IPv6 VIP cannot be added where NetworkManager disabled it), and the node's
    # resolver stays its own bind whatever router advertisements say.
    assert "[ipv6]\nmethod=auto\nignore-auto-dns=true\n" in k


def test_ipv6_vips_live_beside_the_ipv4_node_address():
    import copy
    config = copy.deepcopy(EXAMPLE_CONFIG)
    config["vips"].insert(0, {"address": "2001:db8::53/64", "interface": "eth0",
                              "prefers": {"dns-pm01": 200, "dns-pm02": 100}})
    assert nodeplan.node_settings(config, "dns-pm02") == nodeplan.node_settings(EXAMPLE_CONFIG, "dns-pm02")
    config["vips"] = config["vips"][:1]
    with pytest.raises(nodeplan.PlanError, match="in no VIP's network"):
        nodeplan.node_settings(config, "dns-pm01")


def test_apply_writes_once_and_again_only_when_the_file_changes(tmp_path):
    root = tmp_path / "root"
    settings = tmp_path / "dnspair-node.txt"
    settings.write_text("NODE=dns-pm01\r\nINTERFACE=eth0\r\nADDRESS=192.0.2.1/24\r\n")
    changed = nodesettings.apply(str(settings), str(root))
    assert "etc/hostname" in changed
    assert (root / "etc/hostname").read_text() == "dns-pm01\n"
    keyfile = root / "etc/NetworkManager/system-connections/dnspair-eth0.nmconnection"
    # NetworkManager ignores group/world-readable keyfiles
    assert stat.S_IMODE(os.stat(keyfile).st_mode) == 0o600
    assert nodesettings.apply(str(settings), str(root)) == []
    settings.write_text("NODE=dns-pm09\nINTERFACE=end0\nADDRESS=192.0.2.9/24\n")
    assert nodesettings.apply(str(settings), str(root))
    assert (root / "etc/hostname").read_text() == "dns-pm09\n"
    assert "192.0.2.9\tdns-pm09" in (root / "etc/hosts").read_text()
    conns = os.listdir(root / "etc/NetworkManager/system-connections")
    assert conns == ["dnspair-end0.nmconnection"]  # the old interface's profile is gone


def test_apply_refuses_a_broken_file_and_keeps_what_was_there(tmp_path):
    root = tmp_path / "root"
    good = tmp_path / "good.txt"
    good.write_text("NODE=dns-pm01\nINTERFACE=eth0\nADDRESS=192.0.2.1/24\n")
    nodesettings.apply(str(good), str(root))
    bad = tmp_path / "bad.txt"
    bad.write_text("NODE=dns-pm01\nINTERFACE=eth0\nADDRESS=300.0.2.1/24\n")
    assert nodesettings.main(["nodesettings.py", "apply", str(bad), str(root)]) == 1
    connection = root / "etc/NetworkManager/system-connections/dnspair-eth0.nmconnection"
    assert "192.0.2.1/24" in connection.read_text()


def test_authkey_is_32_random_bytes_in_hex(capsys):
    keys = set()
    for _ in range(3):
        assert nodeplan.main(["authkey"]) == 0
        key = capsys.readouterr().out
        assert key.endswith("\n") and len(key.strip()) == 64
        bytes.fromhex(key.strip())
        keys.add(key)
    assert len(keys) == 3


def test_gateway_none_on_the_command_line_means_no_gateway(capsys):
    from imagehelpers import EXAMPLE
    assert nodeplan.main(["settings", EXAMPLE, "dns-pm01", "--gateway", "none"]) == 0
    assert "GATEWAY=\r\n" in capsys.readouterr().out
    assert nodeplan.main(["settings", EXAMPLE, "dns-pm01", "--gateway", "192.0.2.1"]) == 1
    assert "not another host" in capsys.readouterr().err
