"""The `lab` fixture: a fresh real two-node namespace network with bind on both nodes."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab as labmod  # noqa: E402


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if Path(str(item.fspath)).resolve().parent == here:
            item.add_marker(pytest.mark.net)


def _make(request, **kw):
    why = labmod.requirements_missing()
    if why:
        pytest.skip(why)
    lab = labmod.Lab(**kw)
    request.addfinalizer(lab.close)
    lab.start()
    return lab


@pytest.fixture
def lab(request):
    """Two nodes (node1 192.0.2.1, node2 192.0.2.2) and a client (192.0.2.100) on one bridge,
    bind9 answering on both nodes. Torn down after the test, even on failure."""
    return _make(request)


@pytest.fixture
def lab2(request):
    """Same as `lab` with a second link per node (eth1: 192.0.2.129/26, 192.0.2.130/26)."""
    return _make(request, second_link=True)


@pytest.fixture
def lab6(request):
    """Same as `lab` with IPv6 on the nodes and the client (2001:db8::1, ::2, ::100 on eth0)
    and bind listening on IPv6 too."""
    return _make(request, ipv6=True)


@pytest.fixture
def lab_factory(request):
    """Call with keyword args of labmod.Lab (second_link=...) to build a lab."""
    return lambda **kw: _make(request, **kw)
