"""out/os_list.json, the Raspberry Pi Imager repository file build.sh writes next to the images.

Checked against the keys Imager documents (rpi-imager doc/json-schema/os-list-schema.json for an
OS entry's required keys and their types; doc/os-sublist-example.json and doc/schema-notes.md for
devices, architecture, image_download_sha256) and against the images themselves: what Imager
verifies after writing (extract_sha256 of the raw image) must be the decompressed card's hash.
"""
import hashlib
import json
import lzma
import re
import subprocess
import sys
from datetime import UTC, datetime

from imagehelpers import REPO

REQUIRED = {"name": str, "description": str, "icon": str, "url": str, "extract_size": int,
            "extract_sha256": str, "image_download_size": int, "release_date": str}
OPTIONAL = {"image_download_sha256": str, "devices": list, "architecture": str, "website": str,
            "init_format": str, "capabilities": list}
# Imager's device tags (its own os_list_imagingutility_v4.json): which boards an entry is shown for.
DEVICE_TAGS = {"pi5-64bit", "pi4-64bit", "pi3-64bit", "pi3-32bit", "pi2-32bit", "pi1-32bit", "pi4-32bit"}


def check_documented_keys(doc):
    assert set(doc) == {"os_list"}, doc.keys()  # the schema allows only imager and os_list at the top
    for e in doc["os_list"]:
        for key, kind in REQUIRED.items():
            assert isinstance(e.get(key), kind), (key, e.get(key))
        for key in set(e) - set(REQUIRED):
            assert key in OPTIONAL and isinstance(e[key], OPTIONAL[key]), (key, e[key])
        assert re.fullmatch(r"[0-9a-f]{64}", e["extract_sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", e["image_download_sha256"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", e["release_date"])
        assert e["devices"] and set(e["devices"]) <= DEVICE_TAGS, e["devices"]
        assert e["url"].endswith(".img.xz")  # a format Imager decompresses itself
        assert "init_format" not in e  # no Imager customisation: it would rewrite cmdline.txt


def run_oslist(tmp_path, url, lines):
    return subprocess.run([sys.executable, f"{REPO}/image/oslist.py", str(tmp_path), url, "2026-12-02",
                           "0123456789abcdef"], input=lines, capture_output=True, text=True)


def test_the_list_describes_the_given_files(tmp_path):
    (tmp_path / "dns-pm01.img.xz").write_bytes(b"x" * 1000)
    r = run_oslist(tmp_path, "https://example.org/pair/", f"dns-pm01 arm64 4096 {'a' * 64}\n")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "os_list.json").read_text())
    check_documented_keys(doc)
    (e,) = doc["os_list"]
    assert e["url"] == "https://example.org/pair/dns-pm01.img.xz"
    assert e["image_download_size"] == 1000
    assert e["image_download_sha256"] == hashlib.sha256(b"x" * 1000).hexdigest()
    assert (e["extract_size"], e["extract_sha256"]) == (4096, "a" * 64)
    assert e["devices"] == ["pi4-64bit", "pi3-64bit"]
    assert "0123456789abcdef" in e["description"]


def test_a_url_imager_cannot_fetch_is_refused(tmp_path):
    r = run_oslist(tmp_path, "example.org/pair", "")
    assert r.returncode != 0 and "must be http://, https:// or file://" in r.stderr
    assert not (tmp_path / "os_list.json").exists()


def test_build_writes_an_imager_list_matching_its_images(built_mixed, tmp_path):
    doc = json.loads((built_mixed.out / "os_list.json").read_text())
    check_documented_keys(doc)
    entries = {e["name"]: e for e in doc["os_list"]}
    assert set(entries) == {"dnspair dns-pm01", "dnspair dns-pm02"}
    for node, tags in (("dns-pm01", ["pi4-64bit", "pi3-64bit"]), ("dns-pm02", ["pi2-32bit"])):
        e = entries[f"dnspair {node}"]
        xz = built_mixed.out / f"{node}.img.xz"
        assert e["url"] == xz.resolve().as_uri()  # the default: where build.sh wrote it
        assert e["devices"] == tags
        assert e["image_download_size"] == xz.stat().st_size
        published = (built_mixed.out / f"{node}.img.xz.sha256").read_text()
        assert f"{e['image_download_sha256']}  {node}.img.xz" in published
        h, size = hashlib.sha256(), 0
        with lzma.open(xz) as f:
            for block in iter(lambda: f.read(4 << 20), b""):
                h.update(block)
                size += len(block)
        assert (e["extract_size"], e["extract_sha256"]) == (size, h.hexdigest())
        # the build's (UTC) day
        assert e["release_date"] == datetime.fromtimestamp(xz.stat().st_mtime, UTC).date().isoformat()
