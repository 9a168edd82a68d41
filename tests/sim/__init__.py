"""Deterministic simulation of a dnspair pair: two real engines, a simulated LAN and client.

docs/simulator.md describes what it models, the invariants and how to run and replay it.
"""
