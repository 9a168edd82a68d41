"""`dnspair dns promote`: refused while the old primary's bind answers at all (two primaries),
unless --force; never while it holds newer serials. Queries are faked: no packet is sent."""
import pytest

from dnspair import cli
from dnspair.shell import bindfiles, promote, zones
from test_dns import A1, B2, BASE, DNS, KEY, cfg


def _fake(monkeypatch, mine, theirs):
    """SOA answers: this node's bind (127.0.0.1) and the old primary's (192.0.2.1)."""
    monkeypatch.setattr(zones, "soa_serial",
                        lambda server, zone, timeout=1.0: mine if server == "127.0.0.1" else theirs)
    done = []
    monkeypatch.setattr(zones, "transfer", lambda c, k, z: done.append(z) or _Zone(z))
    monkeypatch.setattr(bindfiles, "apply", lambda c, me, k: done.append("apply"))
    monkeypatch.setattr(bindfiles, "rndc", lambda c, *verb: done.append(" ".join(verb)))
    return done


class _Zone:
    def __init__(self, name):
        self.name = name

    def to_text(self, relativize=True):
        return f"{self.name}. 60 IN SOA ns.{self.name}. h. 5 1 1 1 1\n"


def _cfg(tmp_path):
    b = tmp_path / "b"
    (b / "zones").mkdir(parents=True)
    base = BASE.replace("key_file:", f"state_dir: {tmp_path}/state\nkey_file:")
    return cfg(DNS + f"bind: {{etc_dir: {b}/etc, zone_dir: {b}/zones, cache_dir: {b}/cache, "
               f"run_dir: {b}/run}}\n", base=base)


@pytest.mark.parametrize("answer", [5, "REFUSED"])
def test_refused_while_the_old_primary_answers_at_all(tmp_path, monkeypatch, answer):
    done = _fake(monkeypatch, 5, answer)
    with pytest.raises(zones.ZoneError) as e:
        promote.promote(_cfg(tmp_path), B2, KEY)
    why = str(e.value)
    assert "\n" not in why and f"the primary {A1} (192.0.2.1) still answers" in why, why
    assert "two primaries" in why and "--force" in why
    assert done == [] and not (tmp_path / "state").exists()


def test_force_promotes_although_the_old_primary_answers(tmp_path, monkeypatch):
    done = _fake(monkeypatch, 5, 5)
    out = promote.promote(_cfg(tmp_path), B2, KEY, force=True)
    assert f"{B2} is now primary" in out and "forced" in out, out
    assert (tmp_path / "state" / bindfiles.OVERRIDE).read_text() == B2 + "\n"
    assert done[-2:] == ["apply", "reconfig"]


def test_newer_serials_are_refused_even_with_force(tmp_path, monkeypatch):
    done = _fake(monkeypatch, 5, 6)
    with pytest.raises(zones.ZoneError) as e:
        promote.promote(_cfg(tmp_path), B2, KEY, force=True)
    assert "newer serials" in str(e.value) and done == []


def test_promotes_when_the_old_primary_does_not_answer(tmp_path, monkeypatch):
    _fake(monkeypatch, 5, None)
    out = promote.promote(_cfg(tmp_path), B2, KEY)
    assert f"({A1} does not answer)" in out, out


def test_cli_refusal_is_one_line_and_exit_1_and_force_is_an_option(tmp_path, monkeypatch, capsys):
    _fake(monkeypatch, 5, 5)
    key = tmp_path / "authkey"
    key.write_text(KEY.hex() + "\n")
    key.chmod(0o600)
    path = tmp_path / "dnspair.yaml"
    path.write_text((BASE + DNS).replace("key_file: /etc/dnspair/authkey",
                                         f"state_dir: {tmp_path}/state\nkey_file: {key}"))
    rc = cli.main(["dns", "promote", "--node", B2, "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and f"{A1} (192.0.2.1) still answers" in err, err
    assert cli.parser().parse_args(["dns", "promote", "--force"]).force is True
