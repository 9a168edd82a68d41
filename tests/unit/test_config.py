import pytest

from dnspair.core import config
from pairsim import EXAMPLE


def problems(text):
    with pytest.raises(config.ConfigError) as e:
        config.parse(text, "f.yaml")
    return e.value.problems


def test_example_loads_as_written_and_means_its_comments():
    c = config.parse(EXAMPLE)
    assert c.cluster == "clst-01"
    assert c.key_file == "/etc/dnspair/authkey"
    assert c.node_names == ("dns-pm01", "dns-pm02")
    assert c.nodes["dns-pm01"].addresses == ("192.0.2.1",)
    assert [v.address for v in c.vips] == ["192.0.2.11/24", "192.0.2.12/24"]
    assert [v.home(c.node_names) for v in c.vips] == ["dns-pm01", "dns-pm02"]
    assert c.vips[0].prefers == {"dns-pm01": 200, "dns-pm02": 100}
    assert (c.dns_check.server, c.dns_check.query, c.dns_check.type) == ("127.0.0.1", "localhost", "A")
    assert c.failure_threshold == 1 and c.failback == "manual"
    assert len(c.digest) == 16


def test_digest_ignores_comments_and_order_but_not_values():
    a = config.parse(EXAMPLE).digest
    assert config.parse("# hello\n" + EXAMPLE).digest == a
    assert config.parse(EXAMPLE.replace("failback: manual", "failback: auto")).digest != a


@pytest.mark.parametrize("old,new,expect", [
    ("cluster: clst-01", "cluster: 'bad name!'", "f.yaml:2: cluster: must be 1-32"),
    ("failback: manual", "failback: sometimes", "failback: must be manual or auto"),
    ("failure_threshold: 1", "failure_threshold: zero", "failure_threshold: must be an integer"),
    ("failure_threshold: 1", "failure_threshold: 0", "failure_threshold: must be between 1 and 100"),
    ("address: 192.0.2.11/24", "address: 192.0.2.11", "vips[0].address: must be ADDRESS/PREFIX"),
    ("address: 192.0.2.11/24", "address: 192.0.2.300/24", "must be an IPv4 ADDRESS/PREFIX"),
    ("address: 192.0.2.11/24", "address: 192.0.2.12/24", "192.0.2.12 is listed twice"),
    ("address: 192.0.2.11/24", "address: 192.0.2.1/24", "is a heartbeat address of dns-pm01"),
    ("prefers: {dns-pm01: 200, dns-pm02: 100}", "prefers: {dns-pm01: 200}", "no score for dns-pm02"),
    ("prefers: {dns-pm01: 200, dns-pm02: 100}", "prefers: {dns-pm01: 200, dns-pm02: 100, dns-pm03: 5}",
     "prefers.dns-pm03: unknown node"),
    ("addresses: [192.0.2.2]", "addresses: [192.0.2.1]", "192.0.2.1 is already used by dns-pm01"),
    ("addresses: [192.0.2.2]", "addresses: []", "one or two heartbeat addresses"),
    ("query: localhost", "query: localhost\n  color: blue", "dns_check.color: unknown key"),
    ("type: A", "type: QQ", "dns_check.type: must be one of"),
])
def test_bad_values_name_file_line_and_key(old, new, expect):
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    assert any(expect in p for p in problems(text)), problems(text)


def test_every_problem_is_reported_with_its_line():
    text = EXAMPLE.replace("failback: manual", "failback: never").replace("cluster: clst-01", "cluster: ''")
    text += "\ncolour: red\n"
    ps = problems(text)
    assert len(ps) == 3
    lines = [int(p.split(":")[1]) for p in ps]
    assert lines == sorted(lines) or set(lines) == set(lines)
    assert any("colour: unknown key" in p for p in ps)
    for p in ps:
        assert p.startswith("f.yaml:") and p.split(":")[1].isdigit()


def test_unknown_top_level_key_is_an_error():
    assert any("unknown key" in p for p in problems(EXAMPLE + "\nfailbak: auto\n"))


def test_missing_required_keys():
    ps = problems("cluster: x\n")
    assert any("nodes: missing required key" in p for p in ps)
    assert any("vips: missing required key" in p for p in ps)


def test_not_yaml_and_empty():
    assert "not valid YAML" in problems("a: [\n")[0]
    assert "empty" in problems("")[0]
    assert "must be a mapping" in problems("- 1\n- 2\n")[0]


def test_three_nodes_refused():
    text = EXAMPLE.replace("  dns-pm02:\n    addresses: [192.0.2.2]",
                           "  dns-pm02:\n    addresses: [192.0.2.2]\n  dns-pm03:\n    addresses: [192.0.2.3]")
    assert any("exactly 2 nodes" in p for p in problems(text))


def test_heartbeat_timing_must_make_sense():
    ps = problems(EXAMPLE + "\nheartbeat: {interval: 0.5, dead_time: 0.6}\n")
    assert any("heartbeat.dead_time: must be at least twice" in p for p in ps)


def test_optional_sections_and_witness_forms():
    c = config.parse(EXAMPLE + "\nwitness: 192.0.2.254\nstatus_http: {listen: '192.0.2.1:8053'}\n"
                               "failback: auto\nhold_down: 5\n".replace("failback: auto\n", "")
                     + "leds: {green: 5, amber: 6, red: 13, button: 19}\n")
    assert c.witness.address == "192.0.2.254"
    assert (c.status_http.host, c.status_http.port) == ("192.0.2.1", 8053)
    assert c.hold_down == 5 and c.leds.green == 5
    c2 = config.parse(EXAMPLE + "\nwitness: {address: 192.0.2.254, interval: 2}\n")
    assert c2.witness.interval == 2
    assert any("witness: must be an IPv4" in p for p in problems(EXAMPLE + "\nwitness: gateway\n"))


KEY = "3f9a0c71d2e84b56a1f0c9d8e7b6a5943f2e1d0c9b8a79685746352413021f0e"


def test_key_parsing():
    assert config.parse_key(KEY + "\n") == bytes.fromhex(KEY)
    with pytest.raises(config.ConfigError, match="too short"):
        config.parse_key("abcd")
    with pytest.raises(config.ConfigError, match="not a dnspair key"):
        config.parse_key("hello world")


@pytest.mark.parametrize("text,expect", [
    ("00" * 32, "not random (1 distinct"),
    ("ab" * 32 + "\n", "not random (1 distinct"),
    ("00ff" * 16, "not random (2 distinct"),
    ("00112233445566" * 5, "not random (7 distinct"),
    (KEY + KEY + "00", "key too long (65 bytes"),
    (KEY + "\n" + KEY + "\n", "one line of hex and nothing else"),
    (KEY + " trailing", "one line of hex and nothing else"),
])
def test_weak_or_overlong_keys_are_refused_in_one_line(text, expect):
    with pytest.raises(config.ConfigError) as e:
        config.parse_key(text, "/etc/dnspair/authkey")
    [line] = e.value.problems
    assert line.startswith("/etc/dnspair/authkey: ") and expect in line, line


def test_a_key_file_longer_than_what_is_read_is_refused_not_cut(tmp_path):
    from dnspair.shell.files import load_key
    path = tmp_path / "authkey"
    path.write_text(KEY + "\n" + " " * 5000 + "junk\n")
    path.chmod(0o600)
    with pytest.raises(config.ConfigError, match="larger than 4096 bytes"):
        load_key(str(path))
    path.write_text(KEY + "\n")
    assert load_key(str(path)) == bytes.fromhex(KEY)


@pytest.mark.parametrize("old,new,line,tag", [
    ("cluster: clst-01", "cluster: !!python/str clst-01", 2, "python/str"),
    ("failback: manual", "failback: !!timestamp 2001-12-14", None, "timestamp"),
    ("query: localhost", "query: !mine localhost", None, "!mine"),
    ("vips:", "vips: !!seq", None, "seq"),
])
def test_yaml_tags_are_refused_in_one_line_naming_file_and_line(old, new, line, tag):
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    ps = problems(text)
    want = line or next(i for i, t in enumerate(text.splitlines(), 1) if tag.lstrip("!") in t)
    assert len(ps) == 1 and tag in ps[0], ps
    assert ps[0].startswith(f"f.yaml:{want}: YAML tags are not accepted"), ps


def test_the_old_control_group_key_is_refused_in_one_line_naming_its_replacements():
    """control.group (one group for everything, adm by default) became admin_group and
    monitor_group; an old config gets one line saying so, not 'unknown key' or a traceback."""
    got = problems(EXAMPLE + "control: {socket: /run/dnspair/control.sock, group: adm}\n")
    line = len(EXAMPLE.splitlines()) + 1
    assert got == [f"f.yaml:{line}: control.group: no longer used: give control.admin_group (may standby, "
                   "unstandby, move, cleanup; default dnspair-admin) and/or control.monitor_group "
                   "(status only; default dnspair-monitor) instead (docs/security.md)"]
    c = config.parse(EXAMPLE + "control: {admin_group: ops, monitor_group: nagios}\n")
    assert (c.control.admin_group, c.control.monitor_group) == ("ops", "nagios")
    c = config.parse(EXAMPLE + "runtime_dir: /run/dp\ncontrol: {admin_group: ops}\n")
    assert (c.control.socket, c.control.admin_group, c.control.monitor_group) == \
        ("/run/dp/control.sock", "ops", "dnspair-monitor"), "runtime_dir moves the socket, keeps the groups"
