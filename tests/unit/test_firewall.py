"""The ruleset generator (core/firewall.py): what each config lets in. That nft loads it and
drops what it should is tests/net/test_firewall_lan.py's (real nft, real hosts)."""
import pytest

from dnspair.core import config, firewall
from pairsim import EXAMPLE


def rules(extra="", me="dns-pm01"):
    return firewall.ruleset(config.parse(EXAMPLE + extra), me)


def lines(text, word):
    return [line.strip() for line in text.splitlines() if word in line and not line.strip().startswith("#")]


def test_the_example_admits_the_peer_dns_and_ssh_from_the_lan_and_nothing_for_monitoring():
    r = rules()
    assert lines(r, "7405") == ["ip saddr 192.0.2.2 ip daddr 192.0.2.1 udp dport 7405 "
                                "fib saddr . iif oif exists accept"]
    assert lines(r, "dport 53") == ["ip saddr { 192.0.2.0/24 } udp dport 53 accept",
                                    "ip saddr { 192.0.2.0/24 } tcp dport 53 accept"]
    assert lines(r, "dport 22") == ["ip saddr { 192.0.2.0/24 } tcp dport 22 accept"]
    assert not lines(r, "5666"), "no monitoring host configured: NRPE is not reachable"
    assert r.splitlines()[-3:] == ["\t}", "}", 'include "/etc/dnspair/firewall.d/*.nft"']
    assert "\t\tjump own\n\t\tcounter name dropped drop\n\t}" in r
    assert "policy drop;" in r


def test_the_other_node_gets_the_mirror_image():
    assert lines(rules(me="dns-pm02"), "7405")[0].startswith("ip saddr 192.0.2.1 ip daddr 192.0.2.2 ")


def test_two_links_each_from_the_peers_address_on_that_link():
    text = EXAMPLE.replace("addresses: [192.0.2.1]", "addresses: [192.0.2.1, 192.0.2.129]").replace(
        "addresses: [192.0.2.2]", "addresses: [192.0.2.2, 192.0.2.130]")
    r = firewall.ruleset(config.parse(text + "heartbeat: {port: 7777}\n"), "dns-pm01")
    assert [line.split(" udp")[0] for line in lines(r, "7777")] == [
        "ip saddr 192.0.2.2 ip daddr 192.0.2.1", "ip saddr 192.0.2.130 ip daddr 192.0.2.129"]


def test_monitoring_hosts_get_nrpe_and_the_status_port_ssh_list_replaces_the_lan():
    r = rules("status_http: {listen: '0.0.0.0:8053'}\n"
              "firewall: {monitoring: [192.0.2.50, '2001:db8::9'], ssh_from: [192.0.2.60/31]}\n")
    assert lines(r, "5666") == ["ip saddr { 192.0.2.50/32 } tcp dport { 5666, 8053 } accept",
                                "ip6 saddr { 2001:db8::9/128 } tcp dport { 5666, 8053 } accept"]
    assert lines(r, "dport 22") == ["ip saddr { 192.0.2.60/31 } tcp dport 22 accept"]
    # a host inside a network listed already is not listed again (nft refuses overlaps)
    assert "ip saddr { 192.0.2.0/24 } icmp type echo-request" in r
    c = config.parse(EXAMPLE + "status_http: {listen: '0.0.0.0:8053'}\n"
                               "firewall: {monitoring: [192.0.2.50]}\n")
    assert firewall.daemon_peers(c, "dns-pm01") == [
        "127.0.0.0/8", "::1/128", "127.0.0.1",
        "192.0.2.1", "192.0.2.2", "192.0.2.11", "192.0.2.12", "192.0.2.50/32"]


def test_dns_from_and_no_include_dir():
    r = firewall.ruleset(config.parse(EXAMPLE + "firewall: {dns_from: [192.0.2.0/25]}\n"), "dns-pm01", None)
    assert lines(r, "dport 53")[0] == "ip saddr { 192.0.2.0/25 } udp dport 53 accept"
    assert "include" not in r.split("}\n")[-1]


@pytest.mark.parametrize("extra,expect", [
    ("firewall: {monitoring: [nagios.example]}\n", "firewall.monitoring: must be an address or ADDRESS/"),
    ("firewall: {ssh_from: 192.0.2.0/24}\n", "firewall.ssh_from: must be a list"),
    ("firewall: {enabled: maybe}\n", "firewall.enabled: must be a boolean"),
    ("firewall: {open: [22]}\n", "firewall.open: unknown key"),
])
def test_bad_firewall_keys_name_file_line_and_key(extra, expect):
    with pytest.raises(config.ConfigError) as e:
        config.parse(EXAMPLE + extra, "f.yaml")
    assert any(p.startswith("f.yaml:") and expect in p for p in e.value.problems), e.value.problems


def test_an_ipv6_pair_admits_its_ipv6_peer_neighbour_discovery_and_the_ipv6_lan():
    text = (EXAMPLE.replace("addresses: [192.0.2.1]", "addresses: ['2001:db8::1']")
            .replace("addresses: [192.0.2.2]", "addresses: ['2001:db8::2']")
            .replace("address: 192.0.2.12/24", "address: 2001:db8::53/64"))
    c = config.parse(text)
    r = firewall.ruleset(c, "dns-pm01")
    assert "table inet dnspair {" in r, "one table for both families"
    assert lines(r, "7405") == ["ip6 saddr 2001:db8::2 ip6 daddr 2001:db8::1 udp dport 7405 "
                                "fib saddr . iif oif exists accept"]
    assert lines(r, "nd-neighbor-solicit") == [
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } ip6 hoplimit 255 accept"]
    assert lines(r, "mld-listener-query") == [
        "icmpv6 type mld-listener-query ip6 saddr fe80::/10 ip6 hoplimit 1 accept"]
    assert lines(r, "dport 53") == ["ip saddr { 192.0.2.0/24 } udp dport 53 accept",
                                    "ip6 saddr { 2001:db8::/64 } udp dport 53 accept",
                                    "ip saddr { 192.0.2.0/24 } tcp dport 53 accept",
                                    "ip6 saddr { 2001:db8::/64 } tcp dport 53 accept"]
    assert "ip6 saddr { 2001:db8::/64 } icmpv6 type echo-request limit rate 20/second accept" in r
    # The unit's allow list: the IPv6 heartbeat addresses and the all-nodes group its
    # Neighbour Advertisements go to (IPAddressDeny=any would drop them otherwise).
    assert firewall.daemon_peers(c, "dns-pm01") == [
        "127.0.0.0/8", "::1/128", "127.0.0.1", "2001:db8::1", "2001:db8::2", "192.0.2.11",
        "2001:db8::53", "ff02::1/128"]
    assert "ff02::1/128" not in firewall.daemon_peers(config.parse(EXAMPLE), "dns-pm01"), \
        "IPv4 VIPs only: no NA, no multicast"


def test_notify_to_joins_the_daemons_allow_list_and_opens_no_port():
    """The notify commands run in the daemon's unit (IPAddressDeny=any): a webhook is reachable
    only through firewall.notify_to. It is outgoing only: the ruleset admits nothing new."""
    c = config.parse(EXAMPLE + "firewall: {notify_to: [192.0.2.80, '2001:db8::80/127', 192.0.2.80/32]}\n")
    assert firewall.daemon_peers(c, "dns-pm01")[-2:] == ["192.0.2.80/32", "2001:db8::80/127"]
    def body(text):   # the header names the config's digest, which differs
        return text.split("table inet dnspair {", 1)[1]
    assert body(firewall.ruleset(c, "dns-pm01")) == body(rules())
    assert config.parse(EXAMPLE).firewall.notify_to == ()
    with pytest.raises(config.ConfigError) as e:
        config.parse(EXAMPLE + "firewall: {notify_to: [hooks.example.org]}\n", "f.yaml")
    assert "firewall.notify_to: must be an address or ADDRESS/PREFIX" in e.value.problems[0]
