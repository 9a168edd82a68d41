#!/usr/bin/python3
"""Helpers for `build.sh --update-bundle` (host python, standard library and pip only).

reqs PYPROJECT MACHINE [--native]: dnspair's runtime requirements for MACHINE (aarch64, armv7l,
x86_64), markers evaluated for that machine, one a line. Without --native, systemd-python is
left out: the image has Debian's python3-systemd (the same 235), seen through the venv's
--system-site-packages, and its sdist would need a compiler for the target.
manifest DIR VERSION MACHINE: write DIR/MANIFEST.json with the SHA-256 of every file under DIR.
"""
import hashlib
import json
import os
import sys
import tomllib

from pip._vendor.packaging.requirements import Requirement

FORMAT = 1


def reqs(pyproject, machine, native):
    with open(pyproject, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    env = {"platform_machine": machine, "sys_platform": "linux", "python_version": "3.11"}
    out = []
    for d in deps:
        r = Requirement(d)
        if r.marker is not None and not r.marker.evaluate(env):
            continue
        if r.name == "systemd-python" and not native:
            continue
        out.append(r.name + str(r.specifier))
    return out


def manifest(top, version, machine):
    files = {}
    for base, _, names in os.walk(top):
        for n in sorted(names):
            p = os.path.join(base, n)
            rel = os.path.relpath(p, top)
            if rel == "MANIFEST.json":
                continue
            with open(p, "rb") as f:
                files[rel] = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(top, "MANIFEST.json"), "w") as f:
        json.dump({"format": FORMAT, "name": "dnspair", "version": version, "machine": machine,
                   "python": "3.11", "files": files}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    cmd, *a = sys.argv[1:]
    if cmd == "reqs":
        print("\n".join(reqs(a[0], a[1], "--native" in a)))
    elif cmd == "manifest":
        manifest(*a)
    else:
        sys.exit(f"bundle.py: unknown command {cmd}")
