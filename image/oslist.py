#!/usr/bin/python3
"""out/os_list.json: a Raspberry Pi Imager repository listing the node images of one build.

In Imager: App Options > Content Repository > Use custom file (or `rpi-imager --repo FILE|URL`).
Keys as Imager's schema documents them (rpi-imager doc/json-schema/os-list-schema.json, and
doc/os-sublist-example.json for devices, architecture, image_download_sha256). No init_format:
Imager then offers none of its OS customisation (user, Wi-Fi, firstrun.sh in cmdline.txt),
which this image does not take; its settings are dnspair-node.txt on the FAT partition.

usage: oslist.py DIR URL_BASE DATE KEY_ID < lines "NODE ARCH EXTRACT_SIZE EXTRACT_SHA256"
DIR holds NODE.img.xz; URL_BASE is where they will be downloaded from (http(s):// or file://).
"""
import base64
import hashlib
import json
import os
import re
import sys

# The boards each arch's kernel and device trees serve (docs/image.md), as Imager's device tags.
BOARDS = {
    "arm64": ("Raspberry Pi 3, 4, 400, Zero 2 W (64-bit)", ["pi4-64bit", "pi3-64bit"], "armv8"),
    "armhf": ("Raspberry Pi 2B (32-bit)", ["pi2-32bit"], "armhf"),
}
ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40">'
        '<rect width="40" height="40" rx="6" fill="#1d4e89"/>'
        '<circle cx="13" cy="20" r="6" fill="#7fd67f"/><circle cx="27" cy="20" r="6" fill="#7fd67f"/>'
        '<path d="M19 20h2" stroke="#fff" stroke-width="2"/></svg>')
URL_RE = re.compile(r"(https?|file)://\S+")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def entry(directory, url_base, date, key_id, node, arch, extract_size, extract_sha256):
    boards, devices, architecture = BOARDS[arch]
    xz = os.path.join(directory, f"{node}.img.xz")
    return {
        "name": f"dnspair {node}",
        "description": f"DNS pair node {node} for {boards}. Flash both nodes of one build "
                       f"(key id {key_id}); settings in dnspair-node.txt on the boot partition.",
        "icon": "data:image/svg+xml;base64," + base64.b64encode(ICON.encode()).decode(),
        "url": f"{url_base.rstrip('/')}/{node}.img.xz",
        "extract_size": int(extract_size),
        "extract_sha256": extract_sha256,
        "image_download_size": os.path.getsize(xz),
        "image_download_sha256": sha256_of(xz),
        "release_date": date,
        "devices": devices,
        "architecture": architecture,
    }


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__.strip().splitlines()[-2])
    directory, url_base, date, key_id = argv[1:]
    if not URL_RE.fullmatch(url_base):
        sys.exit(f"oslist.py: image URL must be http://, https:// or file://..., not {url_base!r}")
    entries = [entry(directory, url_base, date, key_id, *line.split())
               for line in sys.stdin if line.strip()]
    with open(os.path.join(directory, "os_list.json"), "w", encoding="utf-8") as f:
        json.dump({"os_list": entries}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv)
