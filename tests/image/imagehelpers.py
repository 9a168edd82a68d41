"""Paths shared by the image tests; the two modules under test are plain scripts, loaded by path."""
import importlib.util
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(REPO, "example", "dnspair.yaml")


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


nodesettings = load("nodesettings", "overlays/usr/local/lib/dnspair-image/nodesettings.py")
nodeplan = load("nodeplan", "image/nodeplan.py")
