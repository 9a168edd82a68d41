"""Where the image's packages are listed. The Debian base is cached by a hash of its recipe
(image/10-base.sh base_recipe, which includes image/packages.ARCH): a package added there costs
a base rebuild (~25 min for armhf), one added to step 12's EXTRA_DEBS does not."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def listed(path):
    return {line.strip() for line in (REPO / path).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def test_nftables_comes_from_the_extras_not_the_cached_base():
    extras = re.search(r'^EXTRA_DEBS="([^"]*)"', (REPO / "image/12-extras.sh").read_text(), re.M)
    assert extras and {"gpiod", "nftables"} <= set(extras.group(1).split())
    for arch in ("arm64", "armhf"):
        assert "nftables" not in listed(f"image/packages.{arch}"), arch
    # the Raspberry Pi OS base (--base) has no step 12: its list carries it
    assert "nftables" in listed("image/pios/packages")
