"""Failover benchmark: dnspair against keepalived on the namespace lab. See docs/benchmarks.md."""
