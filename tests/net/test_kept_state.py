"""State that survives a restart, ordered notifications and the history, on the real network."""
import json
import time

import lab as labmod
from campaign import BUDGET
from pair import Pair
from test_faults_common import Watcher, outage

VIP1, VIP2 = labmod.VIP1, labmod.VIP2
SLACK = 0.5   # the shared 2-core machine, as in test_ipv6.py


def history(p, node):
    r = p.cli(node, "history", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_restart_under_manual_failback_keeps_the_vip_where_it_was_and_the_history(lab):
    p = Pair(lab)
    p.start()
    p.wait_served(VIP1, "node1")
    lab.stop_bind("node1")
    p.wait_served(VIP1, "node2")
    lab.restore_bind("node1")
    p.wait(lambda: p.me("node1")["dns"]["ok"], "node1 DNS healthy again")
    why = p.status("node1")["vips"][0]["why"]
    assert why.startswith("on dns-pm02: dns-pm01 DNS failed ") and "(refused" in why, why
    assert why.endswith("stays until `dnspair cleanup` (failback manual)"), why
    before = history(p, "node2")
    failover = [h for h in before if h["kind"] == "failover" and h["vip"] == VIP1]
    assert failover and failover[0]["old_owner"] == "dns-pm01" and failover[0]["new_owner"] == "dns-pm02"
    assert failover[0]["code"] == "peer_dns_failed" and failover[0]["duration_s"] < 1.0

    # The holder's daemon restarts: while it is gone dns-pm01 serves VIP1, then it comes back.
    p.stop("node2")
    p.start("node2")
    p.wait(lambda: VIP1 in lab.vips_on("node2") and VIP1 not in lab.vips_on("node1"),
           "VIP1 back on node2 after its restart")
    time.sleep(1.5)
    assert p.owners("node1") == {VIP1: "dns-pm02", VIP2: "dns-pm02"}, "failback: manual survived"
    p.wait_served(VIP1, "node2")
    # ... and the failed node's restart too.
    p.stop("node1")
    p.start("node1")
    time.sleep(1.5)
    assert lab.vips_on("node1") == [] and p.owners("node1") == {VIP1: "dns-pm02", VIP2: "dns-pm02"}
    assert any(f["what"] == "dns_check" for f in p.status("node1")["failed_actions"]), \
        "the failure record survived the restart"

    after = history(p, "node2")
    assert after[:len(before)] == before, "the history survived the restart"
    numbers = [h["number"] for h in after]
    assert numbers == list(range(1, len(numbers) + 1)), "event numbers go on rising"
    text = p.cli("node2", "status").stdout
    assert "Recent transitions" in text and "why: on dns-pm02:" in text, text
    r = p.cli("node1", "cleanup")
    assert r.returncode == 0, r.stderr
    p.wait_served(VIP1, "node1")


def test_notify_runs_in_order_with_env_and_a_hung_one_does_not_delay_a_failover(lab):
    out = lab.workdir / "notify.out"
    script = lab.workdir / "notify.sh"
    script.write_text(f"""#!/bin/sh
echo "$DNSPAIR_NODE $DNSPAIR_EVENT_ID $DNSPAIR_EVENT vip=$DNSPAIR_VIP old=$DNSPAIR_OLD_OWNER \
new=$DNSPAIR_NEW_OWNER role=$DNSPAIR_ROLE code=$DNSPAIR_REASON_CODE" >> {out}
""")
    script.chmod(0o755)
    # The first event on each node hangs its command until the timeout: the queue behind it
    # waits. The timeout outlasts start-up, so the hang is still on when bind stops.
    extra = (f"notify:\n  - {script}\n  - '[ \"$DNSPAIR_EVENT_ID\" = 1 ] && exec sleep 60; true'\n"
             "notify_timeout: 10\n")
    p = Pair(lab, extra=extra)
    p.start()
    p.wait_served(VIP1, "node1")
    assert p.status("node2")["notify"]["timed_out"] == 0, "the hung command is still running"
    with Watcher(lab, vips=(VIP1,), timeout=0.1) as w:
        time.sleep(0.3)
        t0 = time.monotonic()
        lab.stop_bind("node1")
        p.wait_served(VIP1, "node2")
        time.sleep(0.2)
    took = outage(w, VIP1, "node2", t0)
    print(f"\nbind stopped with a notify command hung: answered by node2 after {took:.3f} s")
    # The campaign's budget plus the slack the IPv6 tests allow: a notify that held the loop
    # for even 1 s fails this.
    assert took <= BUDGET["bind_stop"] + SLACK, f"failover took {took:.3f} s: {w.summary(t0)}"
    assert p.status("node2")["notify"]["timed_out"] == 0, "the failover came while the hang was on"

    def lines(node):
        text = out.read_text() if out.exists() else ""
        return [ln.split() for ln in text.splitlines() if ln.startswith(node)]
    p.wait(lambda: any(ln[2] == "failover" for ln in lines("dns-pm02")), "the failover notified", 25)
    mine = lines("dns-pm02")
    assert [int(ln[1]) for ln in mine] == list(range(1, len(mine) + 1)), mine
    fo = next(ln for ln in mine if ln[2] == "failover")
    assert fo[3:] == [f"vip={VIP1}", "old=dns-pm01", "new=dns-pm02", "role=active", "code=peer_dns_failed"]
    # dns_failed and vip_released are queued one after the other; wait for the later one (CI read
    # the file between the two).
    p.wait(lambda: {"dns_failed", "vip_released"} <= {ln[2] for ln in lines("dns-pm01")},
           "node1's DNS failure and release notified", 25)
    rel = next(ln for ln in lines("dns-pm01") if ln[2] == "vip_released")
    assert rel[3:] == [f"vip={VIP1}", "old=dns-pm01", "new=dns-pm02", "role=failed", "code=dns_failed"]
    st = p.status("node2")["notify"]
    assert st["timed_out"] == 1 and st["commands"] == 2, st
