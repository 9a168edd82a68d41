"""The pair's one DNS service, pure parts: the `dns:` config, bind's rendered config, the TSIG
key derivation, the drift rule, and how a difference reaches every surface."""
import base64
import shutil
import subprocess

import pytest

from dnspair.core import actions as A
from dnspair.core import bindconf, config, drift, status, verdict
from dnspair.core import events as E
from dnspair.core.engine import Engine
from pairsim import EXAMPLE

BASE = EXAMPLE.split("\ndns:")[0] + "\n"   # the example without its dns: section
DNS = """
dns:
  forwarders: [192.0.2.53, 2001:db8::53]
  allow_query: [192.0.2.0/24, localhost]
  zones:
    home.arpa:
      - nas A 192.0.2.20
      - printer 300 A 192.0.2.21
      - "@ MX 10 mail"
      - mail CNAME nas
    2.0.192.in-addr.arpa:
      - 20 PTR nas.home.arpa.
"""
KEY = bytes(range(32))
A1, B2 = "dns-pm01", "dns-pm02"


def cfg(extra=DNS, base=BASE):
    return config.parse(base + extra, "f.yaml")


def problems(extra):
    with pytest.raises(config.ConfigError) as e:
        config.parse(BASE + extra, "f.yaml")
    return e.value.problems


# --- config -------------------------------------------------------------------------------

def test_dns_section_defaults_and_records():
    c = cfg()
    d = c.dns
    assert d.primary == A1, "the first node listed is primary by default"
    assert d.drift_after == 30.0 and d.drift_severity == "warning" and d.forward == "only"
    assert [z.name for z in d.zones] == ["home.arpa", "2.0.192.in-addr.arpa"]
    assert d.zones[0].records[1] == config.Record("printer", "A", "192.0.2.21", 300)
    assert d.zone_of("x.nas.home.arpa.").name == "home.arpa" and d.zone_of("example.org") is None
    assert config.parse(BASE).dns is None


def test_example_declares_local_names():
    c = config.parse(EXAMPLE)
    assert c.dns is not None and c.dns.zone_of("nas.home.arpa") is not None


@pytest.mark.parametrize("extra, expect", [
    ("dns:\n  primary: dns-pm09\n", "dns.primary: unknown node 'dns-pm09'"),
    ("dns:\n  forwarders: [8.8.8]\n", "dns.forwarders: must be an IP address"),
    ("dns:\n  allow_query: [lan]\n", "dns.allow_query: must be a network"),
    ("dns:\n  drift_severity: loud\n", "dns.drift_severity: must be warning or critical"),
    ("dns:\n  drift_after: 0\n", "dns.drift_after: must be between 1 and 86400"),
    ("dns:\n  zones:\n    home..arpa: []\n", "not a zone name"),
    ("dns:\n  zones:\n    '.': []\n", "not a zone name"),
    ("dns:\n  zones:\n    catalog.dnspair.invalid: []\n", "the pair's catalog zone"),
    ("dns:\n  zones:\n    home.arpa:\n      - nas A 999.1.1.1\n", "not valid A data"),
    ("dns:\n  zones:\n    home.arpa:\n      - nas AX 192.0.2.1\n", "type must be one of"),
    ("dns:\n  zones:\n    home.arpa:\n      - nas.example.org. A 192.0.2.1\n", "is not in zone home.arpa."),
    ("dns:\n  zones:\n    home.arpa:\n      - just-a-name\n", "must be NAME [TTL] TYPE DATA"),
    ("dns:\n  zone: {}\n", "dns.zone: unknown key"),
])
def test_bad_dns_settings_are_one_line_with_file_line_and_key(extra, expect):
    found = problems(extra)
    assert len(found) == 1 and expect in found[0], found
    assert found[0].startswith("f.yaml:") and "\n" not in found[0]


def test_node_local_bind_paths_are_not_in_the_digest():
    a = cfg().digest
    assert cfg(DNS + "bind: {etc_dir: /tmp/x, zone_dir: /tmp/z}\n").digest == a
    assert cfg(DNS.replace("192.0.2.53", "192.0.2.54")).digest != a


# --- the TSIG key ------------------------------------------------------------------------

def test_hkdf_matches_rfc5869_test_case_1():
    okm = bindconf.hkdf_sha256(bytes([0x0B] * 22), bytes(range(0xF0, 0xFA)), 42, salt=bytes(range(13)))
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_tsig_key_is_derived_from_the_pair_key_and_never_is_it():
    s = bindconf.tsig_secret(KEY)
    assert s == bindconf.tsig_secret(KEY) and len(s) == 32
    assert s != bindconf.tsig_secret(bytes(32)) and s != KEY
    text = bindconf.key_file(KEY)
    assert base64.b64encode(s).decode() in text and KEY.hex() not in text
    r = bindconf.render(cfg(), A1, KEY)
    assert all(KEY.hex() not in t for t in r.files.values())


# --- rendering ------------------------------------------------------------------------------

def test_primary_and_secondary_are_rendered_from_one_config():
    c = cfg()
    p, s = bindconf.render(c, A1, KEY), bindconf.render(c, B2, KEY)
    plocal, slocal = p.files["/etc/bind/named.conf.local"], s.files["/etc/bind/named.conf.local"]
    assert 'zone "home.arpa" { type primary;' in plocal
    assert 'allow-update { key "dnspair-tsig"; }' in plocal
    assert "also-notify { 192.0.2.2 key" in plocal and "notify-delay 0;" in plocal
    assert "home.arpa" not in slocal, "the secondary learns its zones from the catalog"
    assert 'zone "catalog.dnspair.invalid" { type secondary;' in slocal and "192.0.2.1 key" in slocal
    sopt = s.files["/etc/bind/named.conf.options"]
    assert 'catalog-zones { zone "catalog.dnspair.invalid" default-primaries { 192.0.2.1 key' \
        in sopt
    for r in (p, s):
        opt = r.files["/etc/bind/named.conf.options"]
        assert "forwarders { 192.0.2.53; 2001:db8::53; };" in opt and "forward only;" in opt
        assert "allow-recursion { 192.0.2.0/24; localhost; };" in opt
    # identical by construction: only the per-node lines differ
    def shared(text):
        return [ln for ln in text.splitlines() if "server-id" not in ln]
    popt = shared(p.files["/etc/bind/named.conf.options"])
    extra = [ln for ln in shared(sopt) if ln not in popt]
    assert [ln for ln in extra if not ln.strip().startswith("//")] == [
        ln for ln in sopt.splitlines()
        if "catalog-zones" in ln or "zone-directory" in ln or "refresh-time" in ln]
    assert len(extra) == 6, extra
    assert 'server-id "dns-pm01";' in p.files["/etc/bind/named.conf.options"]
    assert p.digest == s.digest and f'version "dnspair {p.digest}";' in sopt
    assert set(p.seed) == {"/var/lib/bind/dnspair/home.arpa.db",
                           "/var/lib/bind/dnspair/2.0.192.in-addr.arpa.db"}
    assert s.seed == {} and s.catalog is None
    assert bindconf.member_label("home.arpa") + ".zones PTR home.arpa." in p.catalog


def test_promotion_makes_the_secondary_primary_and_changes_the_digest():
    c = cfg()
    r = bindconf.render(c, B2, KEY, primary=B2)
    assert 'zone "home.arpa" { type primary;' in r.files["/etc/bind/named.conf.local"]
    assert "also-notify { 192.0.2.1 key" in r.files["/etc/bind/named.conf.local"]
    assert r.digest != bindconf.render(c, A1, KEY).digest


def test_seed_zone_has_soa_ns_and_the_configs_records_and_a_long_expiry():
    c = cfg()
    text = bindconf.zone_file(c, c.dns.zones[0])
    soa = [ln for ln in text.splitlines() if " SOA " in ln][0].split()
    assert int(soa[-2]) == bindconf.EXPIRE == 8 * 7 * 86400
    assert "ns A 192.0.2.11" in text and "ns A 192.0.2.12" in text
    assert "printer 300 A 192.0.2.21" in text and "@ MX 10 mail" in text


def test_without_a_dns_section_bind_stays_a_caching_resolver():
    r = bindconf.render(config.parse(BASE), A1, KEY)
    opt = r.files["/etc/bind/named.conf.options"]
    assert "allow-recursion { localhost; localnets; };" in opt and "forwarders" not in opt
    assert "zone " not in r.files["/etc/bind/named.conf.local"] and r.seed == {}


def _tree(tmp_path, node_dns=DNS):
    b = tmp_path / "b"
    extra = node_dns + (f"bind: {{etc_dir: {b}/etc, zone_dir: {b}/zones, cache_dir: {b}/cache, "
                        f"run_dir: {b}/run}}\n")
    return cfg(extra)


@pytest.mark.skipif(not shutil.which("named-checkconf"), reason="needs bind9-utils")
@pytest.mark.parametrize("node", [A1, B2])
def test_rendered_config_passes_named_checkconf_z(tmp_path, node):
    from dnspair.shell import bindfiles
    c = _tree(tmp_path)
    done = bindfiles.apply(c, node, KEY)
    etc = tmp_path / "b" / "etc"
    (tmp_path / "b" / "cache").mkdir()
    (etc / "named.conf").write_text(f'include "{etc}/named.conf.options";\n'
                                    f'include "{etc}/named.conf.local";\n')
    r = subprocess.run(["named-checkconf", "-z", str(etc / "named.conf")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    if node == A1:
        assert "zone home.arpa/IN: loaded serial 1" in r.stdout
        assert "zone catalog.dnspair.invalid/IN: loaded serial 1" in r.stdout
        assert done.catalog_serial == 1 and len(done.seeded) == 2


def test_apply_rewrites_only_what_changed_and_never_a_zone_bind_owns(tmp_path):
    from dnspair.shell import bindfiles
    c = _tree(tmp_path)
    bindfiles.apply(c, A1, KEY)
    zone = tmp_path / "b" / "zones" / "home.arpa.db"
    zone.write_text(zone.read_text() + "tv A 192.0.2.30\n")   # bind's own since: never reseeded
    again = bindfiles.apply(c, A1, KEY)
    assert again.written == [] and again.seeded == [] and again.catalog_serial is None
    assert "tv A 192.0.2.30" in zone.read_text()
    more = _tree(tmp_path, DNS + "    pair.test: []\n")
    done = bindfiles.apply(more, A1, KEY)
    assert done.catalog_serial == 2 and done.seeded == [f"{tmp_path}/b/zones/pair.test.db"]
    assert bindfiles.catalog_state(f"{tmp_path}/b/zones/catalog.dnspair.invalid.db") == (
        2, {"home.arpa", "2.0.192.in-addr.arpa", "pair.test"})
    assert oct((tmp_path / "b" / "etc" / "dnspair.key").stat().st_mode & 0o777) == "0o640"


def test_dnspair_asks_rndc_only_to_reload_or_reconfig():
    from dnspair.shell import bindfiles
    for verb in ("stop", "halt", "restart", "flush"):
        with pytest.raises(ValueError):
            bindfiles.rndc(cfg(), verb)


def test_the_one_other_rndc_command_shipped_is_the_documented_clock_flush():
    """dnspair's own code goes through bindfiles.rndc (above); the image's units are the rest."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    found = set()
    for f in (root / "overlays").rglob("*"):
        if f.is_file():
            for line in f.read_text(errors="replace").splitlines():
                if not line.lstrip().startswith("#"):
                    found |= {(f.name, m) for m in re.findall(r"\brndc\s+(?:-\S+\s+\S+\s+)*(\w+)", line)}
    assert found == {("dnspair-dns-clock.service", "flush")}, found
    doc = " ".join((root / "docs" / "dns.md").read_text().split())
    assert "`dnspair-dns-clock.service` runs `rndc flush`" in doc


# --- the drift rule ------------------------------------------------------------------------

def test_a_difference_counts_only_once_it_lasts():
    d = drift.Drift(30)
    d.observe(0, "home.arpa", 3, 1)
    assert d.drifted(29) == [] and d.next_due(10) == pytest.approx(30, abs=1e-3)
    d.observe(29, "home.arpa", 3, 1)
    assert d.drifted(30.5) == ["home.arpa"]
    d.observe(31, "home.arpa", 3, None)     # the peer unreachable: not counted
    assert d.drifted(100) == [] and d.next_due(100) is None
    d.observe(101, "home.arpa", 3, 3)
    assert d.drifted(200) == []
    d.observe(201, "home.arpa", 3, "SERVFAIL")   # the peer's bind answers without the zone
    assert d.drifted(232) == ["home.arpa"]


def test_a_heard_peer_whose_bind_does_not_answer_counts_once_it_lasts():
    d = drift.Drift(30)
    d.observe(0, "home.arpa", 3, None, peer_heard=True)
    assert d.drifted(100) == [] and d.silent(29) == [] and d.next_due(10) == pytest.approx(30, abs=1e-3)
    d.observe(29, "home.arpa", 3, None, peer_heard=True)
    assert d.silent(30.5) == ["home.arpa"] and d.items["home.arpa"].silent_for(30.5) == 30.5
    d.observe(31, "home.arpa", 3, None, peer_heard=False)   # the peer unheard: peer_unheard says it
    assert d.silent(100) == [] and d.next_due(100) is None
    d.observe(101, "home.arpa", 3, None, peer_heard=True)
    d.observe(140, "home.arpa", 3, 3, peer_heard=True)      # it answers again
    assert d.silent(200) == []
    d.observe(201, "home.arpa", 3, "REFUSED", peer_heard=True)   # an answer: drift compares it
    assert d.silent(300) == [] and d.drifted(300) == ["home.arpa"]
    d.observe(301, "reload", "ab", None)   # not the peer's bind: no silence clock
    assert d.silent(400) == []


def test_serial_arithmetic_wraps():
    assert drift.serial_newer(2, 1) and not drift.serial_newer(1, 2)
    assert drift.serial_newer(1, 0xFFFFFFFF) and not drift.serial_newer(5, 5)


# --- through the engine to every surface ------------------------------------------------------

def _engine(extra=DNS):
    c = cfg(extra)
    e = Engine(c, A1, KEY, incarnation=1, now=0.0)
    e.handle(0.0, E.Start())
    return e


def _zones(e, now, mine, theirs, errors=()):
    digest = bindconf.shared_digest(e.cfg.dns)
    return e.handle(now, E.ZoneSerials(zones=(("home.arpa", mine, theirs),), digests=(digest, digest),
                                       rendered=digest, primary=A1, errors=errors))


def test_engine_asks_every_check_interval_and_wakes_when_a_difference_will_count():
    e = _engine(DNS + "  check_interval: 2\n  drift_after: 10\n".replace("  ", "  ", 1))
    st = e.handle(0.0, E.Tick())
    asked = [0.0] if any(isinstance(a, A.CheckZones) for a in st.actions) else []
    t = 0.0
    while t < 6.5:
        t = round(t + 0.05, 2)
        if any(isinstance(a, A.CheckZones) for a in e.handle(t, E.Tick()).actions):
            asked.append(t)
    assert len(asked) == 3 and asked[1] - asked[0] == pytest.approx(2, abs=0.1)
    step = _zones(e, 7.0, 5, 4)
    assert step.wake_at <= 7.0 + 10 + 0.01
    notes = [a.text for a in e.handle(17.1, E.Tick()).actions if isinstance(a, A.Notify)]
    assert any("differing: home.arpa" in n for n in notes), notes


def test_a_lasting_difference_reads_the_same_on_every_surface():
    from dnspair.shell import http
    from dnspair.shell.leds import lights
    from dnspair.surfaces import render
    e = _engine()
    _zones(e, 1.0, 2026120203, 2026120201)
    st = status.build(e, 241.0, 1_000_000.0)
    z = st["dns"]["zones"][0]
    assert z["serials"] == {A1: 2026120203, B2: 2026120201} and z["drifted"]
    f = [x for x in verdict.findings(st) if x.kind == "zone_drift"]
    assert [x.text for x in f] == ["zone home.arpa: dns-pm01 serial 2026120203, dns-pm02 2026120201, "
                                   "differing for 4 min"]
    assert f[0].severity == "warning"
    assert f[0].text in render.text(st)
    assert 'dnspair_zone_drift{zone="home.arpa"} 1' in http.metrics(st)
    assert lights(st)[1], "amber"
    early = status.build(e, 20.0, 1_000_000.0)
    assert not [x for x in verdict.findings(early) if x.kind == "zone_drift"] and not lights(early)[1]


def test_a_heard_peer_whose_bind_is_silent_reads_the_same_on_every_surface():
    from dnspair.shell import http
    from dnspair.shell.leds import lights
    from dnspair.surfaces import render
    from pairsim import Pair
    p = Pair(BASE + DNS)
    p.run(5, dt=0.5)
    e = p.e[A1]
    assert e.peer_alive(p.now)
    digest = bindconf.shared_digest(e.cfg.dns)

    def zones(peer_serial):   # what a zone check answers: the peer's bind silent to us
        p.deliver(A1, E.ZoneSerials(zones=(("home.arpa", 2026120203, peer_serial),),
                                    digests=(digest, None), rendered=digest, primary=A1))
    t0 = p.now
    for _ in range(24):
        zones(None)
        p.run(10, dt=0.5)
    st = status.build(e, t0 + 240.0, 1_000_000.0)
    z = st["dns"]["zones"][0]
    assert z["serials"] == {A1: 2026120203, B2: None} and z["peer_silent"] and not z["drifted"]
    f = [x for x in verdict.findings(st) if x.kind == "zone_unanswered"]
    assert [(x.text, x.severity, x.node) for x in f] == [
        ("zone home.arpa: dns-pm02's bind has not answered for 4 min (serials cannot be compared)",
         "warning", B2)]
    assert f[0].text in render.text(st)
    assert 'dnspair_zone_peer_silent{zone="home.arpa"} 1' in http.metrics(st)
    assert lights(st)[1], "amber"
    assert any(x["kind"] == "zone_unanswered" for x in st["findings"]), "--json"
    from dnspair.surfaces import plugin
    assert (plugin.STATE["warning"], f[0].text) in plugin.judge(st)
    # the peer answering again clears it; a peer unheard is peer_unheard, not this
    zones(2026120203)
    assert not [x for x in verdict.findings(status.build(e, p.now, 1_000_000.0))
                if x.kind == "zone_unanswered"]
    p.link[B2] = False
    for _ in range(6):
        zones(None)
        p.run(10, dt=0.5)
    kinds = {x.kind for x in verdict.findings(status.build(e, p.now, 1_000_000.0))}
    assert "peer_unheard" in kinds and "zone_unanswered" not in kinds


def test_drift_severity_is_configurable():
    e = _engine(DNS + "  drift_severity: critical\n")
    _zones(e, 1.0, 3, 1)
    st = status.build(e, 100.0, 1_000_000.0)
    assert [x.severity for x in verdict.findings(st) if x.kind == "zone_drift"] == ["critical"]


def test_a_zone_that_does_not_load_is_a_failed_action_with_binds_line():
    e = _engine()
    line = "/var/lib/bind/dnspair/home.arpa.db:9: unknown RR type 'AX'"
    acts = _zones(e, 1.0, 3, 3, errors=(("home.arpa", line),)).actions
    assert any(isinstance(a, A.Log) and line in a.text for a in acts)
    st = status.build(e, 2.0, 1_000_000.0)
    assert [(f["what"], f["why"]) for f in st["failed_actions"]] == [("zone_load", f"home.arpa: {line}")]
    assert st["dns"]["zones"][0]["load_error"] == line
    assert "failures_recorded" in {x.kind for x in verdict.findings(st)}


def test_bind_running_another_config_than_the_yaml_is_reported():
    e = _engine()
    digest = bindconf.shared_digest(e.cfg.dns)
    e.handle(1.0, E.ZoneSerials(zones=(("home.arpa", 3, 3),), digests=("0123", digest), rendered=digest))
    st = status.build(e, 40.0, 1_000_000.0)
    texts = [x.text for x in verdict.findings(st) if x.kind == "dns_config_drift"]
    assert any("bind config differs" in t for t in texts)
    assert any("bind on dns-pm01 runs another config" in t and "dnspair reload" in t for t in texts)


# --- the CLI: bad input is one line, and nothing is sent -------------------------------------

@pytest.mark.parametrize("args, why", [
    (("add", "nas.example.org", "A", "192.0.2.9"), "nas.example.org. is in no local zone (zones: home.arpa"),
    (("add", "x.home.arpa", "A", "192.0.2.300"), "not valid A data '192.0.2.300'"),
    (("add", "x.home.arpa", "SOA", "a b 1 2 3 4 5"), "type must be one of"),
    (("add", "x.home.arpa", "A", "192.0.2.9", "--ttl", "9999999"), "TTL must be between 0 and 604800"),
    (("delete", "home.arpa"), "the apex of home.arpa keeps its SOA and NS records"),
    (("list", "example.org"), "example.org is not a local zone"),
])
def test_records_refuses_bad_input_in_one_line_before_sending_anything(tmp_path, capsys, args, why):
    from dnspair import cli
    key = tmp_path / "authkey"
    key.write_text(KEY.hex() + "\n")
    key.chmod(0o600)
    path = tmp_path / "dnspair.yaml"
    # the example's primary (192.0.2.1) is not on this machine: each refusal comes before any send
    path.write_text(EXAMPLE.replace("key_file: /etc/dnspair/authkey", f"key_file: {key}"))
    rc = cli.main(["records", *args, "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and why in err, err
