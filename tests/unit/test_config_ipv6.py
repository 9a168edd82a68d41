"""IPv6 in the config: VIPs, heartbeat links and the DNS check, refused with one line when unusable."""
import pytest

from dnspair.core import config
from pairsim import EXAMPLE


def problems(text):
    with pytest.raises(config.ConfigError) as e:
        config.parse(text, "f.yaml")
    return e.value.problems


MIXED = EXAMPLE.replace("address: 192.0.2.12/24", "address: 2001:DB8:0::53/64")


def test_a_pair_may_mix_ipv4_and_ipv6_vips_with_the_same_scores():
    c = config.parse(MIXED)
    assert [v.address for v in c.vips] == ["192.0.2.11/24", "2001:db8::53/64"], "one spelling"
    assert [v.family for v in c.vips] == [4, 6]
    assert (c.vips[1].ip, c.vips[1].prefixlen) == ("2001:db8::53", 64)
    assert [v.home(c.node_names) for v in c.vips] == ["dns-pm01", "dns-pm02"]
    assert c.vip("2001:db8:0:0::53") == 1 and c.vip("2001:DB8::53/64") == 1
    with pytest.raises(ValueError):
        c.vip("2001:db8::54")


def test_ipv6_heartbeat_links_and_the_dns_check_on_loopback():
    text = (MIXED.replace("addresses: [192.0.2.1]", "addresses: ['2001:db8::1', 192.0.2.129]")
            .replace("addresses: [192.0.2.2]", "addresses: ['2001:DB8::0002', 192.0.2.130]")
            .replace("server: 127.0.0.1", "server: '::1'"))
    c = config.parse(text)
    assert c.nodes["dns-pm02"].addresses == ("2001:db8::2", "192.0.2.130"), \
        "canonical: the engine compares it with the datagram's source"
    assert c.dns_check.server == "::1"


@pytest.mark.parametrize("old,new,expect", [
    ("address: 192.0.2.12/24", "address: fe80::53/64",
     "vips[1].address: fe80::53 is link-local: it needs an interface scope"),
    ("address: 192.0.2.12/24", "address: 2001:db8::53/24", "prefix /24 is too short for a LAN"),
    ("address: 192.0.2.12/24", "address: 2001:db8::/64", "is the subnet-router anycast address"),
    ("address: 192.0.2.12/24", "address: ff02::53/64", "multicast, unspecified or loopback"),
    ("address: 192.0.2.12/24", "address: '::ffff:192.0.2.12/120'", "IPv4-mapped"),
    ("address: 192.0.2.12/24", "address: 2001:db8::53", "must be ADDRESS/PREFIX"),
    ("address: 192.0.2.12/24", "address: 2001:db8::53%eth0/64", "has a %scope"),
    ("address: 192.0.2.12/24", "address: 2001:db8::zz/64", "must be an IPv6 ADDRESS/PREFIX"),
    ("address: 192.0.2.12/24", "address: 2001:db8::53/129", "must be an IPv6 ADDRESS/PREFIX"),
    ("addresses: [192.0.2.2]", "addresses: ['fe80::2']", "nodes.dns-pm02.addresses: fe80::2 is link-local"),
    ("addresses: [192.0.2.2]", "addresses: ['2001:db8::2%eth0']", "has a %scope"),
    ("addresses: [192.0.2.2]", "addresses: ['2001:db8::2']",
     "heartbeat link 0: 192.0.2.1 and 2001:db8::2 are not the same IP version"),
    ("addresses: [192.0.2.2]", "addresses: ['2001:db8::zz']", "must be an IPv4 or IPv6 address"),
    ("server: 127.0.0.1", "server: 'localhost6'", "dns_check.server: must be an IPv4 or IPv6 address"),
])
def test_unusable_ipv6_gets_one_line_naming_file_line_and_key(old, new, expect):
    text = EXAMPLE.replace(old, new, 1)
    assert text != EXAMPLE
    ps = problems(text)
    assert any(expect in p for p in ps), ps
    assert all("\n" not in p and p.startswith("f.yaml:") for p in ps)


def test_the_same_ipv6_address_spelled_twice_is_still_one_address():
    text = (MIXED.replace("address: 192.0.2.11/24", "address: 2001:db8:0::53/64")
            .replace("prefers: {dns-pm01: 100, dns-pm02: 200}", "prefers: {dns-pm01: 100, dns-pm02: 200}"))
    assert any("2001:db8::53 is listed twice" in p for p in problems(text))
    hb = (EXAMPLE.replace("addresses: [192.0.2.1]", "addresses: ['2001:db8::1']")
          .replace("addresses: [192.0.2.2]", "addresses: ['2001:db8::2']")
          .replace("address: 192.0.2.12/24", "address: 2001:db8:0::1/64"))
    assert any("2001:db8::1 is a heartbeat address of dns-pm01" in p for p in problems(hb))
