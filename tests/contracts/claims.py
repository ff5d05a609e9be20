"""What every datastream plugin with claims guarantees (:mod:`observml.plugins.claims`).

A plugin's test class adds :class:`ClaimsContract` beside ``DataStreamContract`` and provides
two fixtures: ``datastream`` (a connected plugin) and ``twin`` (another connected plugin on the
same service, standing for another hub process). :func:`claim_in_child` runs a child process
that takes a claim and is then killed, for the plugins whose claims outlive a process only
until it dies.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from observml.errors import ConfigError, ServiceUnavailableError
from observml.plugins.claims import SupportsClaims
from observml.plugins.datastream import DataStreamPlugin
from tests.contracts.datastream import eventually

#: A child process: build the plugin from the code in argv[1], take claim argv[2], say so, sleep.
_HOLDER = """
import sys, time
namespace = {}
exec(sys.argv[1], namespace)
plugin = namespace["plugin"]
plugin.connect()
claim = plugin.claim(sys.argv[2])
print("held" if claim is not None else "taken", flush=True)
time.sleep(600)
"""


def new_key() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


def claim_in_child(plugin_code: str, key: str) -> subprocess.Popen[str]:
    """Start a process holding claim ``key`` on the plugin ``plugin_code`` builds; wait for it.

    The caller kills it and calls :func:`reap`.
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, plugin_code, key], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    return child


def reap(child: subprocess.Popen[str]) -> None:
    """Kill ``child`` (if still alive), wait for it and close its pipe."""
    child.kill()
    child.wait(10)
    if child.stdout is not None:
        child.stdout.close()


class ClaimsContract:
    def test_plugin_offers_claims(self, datastream: DataStreamPlugin) -> None:
        assert isinstance(datastream, SupportsClaims)

    def test_a_claim_has_one_holder_at_a_time(
        self, datastream: SupportsClaims, twin: SupportsClaims
    ) -> None:
        key = new_key()
        first = datastream.claim(key)
        assert first is not None
        assert first.key == key
        try:
            assert twin.claim(key) is None
            assert datastream.claim(key) is None  # not even its own holder twice
        finally:
            first.release()
        second = twin.claim(key)
        assert second is not None, "a released claim can be taken again"
        second.release()

    def test_claims_on_other_keys_are_independent(
        self, datastream: SupportsClaims, twin: SupportsClaims
    ) -> None:
        first, second = datastream.claim(new_key()), twin.claim(new_key())
        assert first is not None
        assert second is not None
        first.release()
        second.release()

    def test_release_twice_is_harmless(self, datastream: SupportsClaims) -> None:
        claim = datastream.claim(new_key())
        assert claim is not None
        claim.release()
        claim.release()

    def test_disconnect_gives_every_claim_up(
        self, datastream: DataStreamPlugin, twin: SupportsClaims
    ) -> None:
        key = new_key()
        assert isinstance(datastream, SupportsClaims)
        assert datastream.claim(key) is not None
        datastream.disconnect()
        datastream.connect()
        assert eventually(lambda: _take_and_release(twin, key), timeout=10.0)

    def test_a_claim_while_disconnected_is_service_unavailable(
        self, datastream: DataStreamPlugin
    ) -> None:
        assert isinstance(datastream, SupportsClaims)
        datastream.disconnect()
        try:
            with pytest.raises(ServiceUnavailableError, match="connect"):
                datastream.claim(new_key())
        finally:
            datastream.connect()

    @pytest.mark.parametrize("key", ["", "../etc/passwd", "a b", "-x", "x" * 201])
    def test_a_bad_key_is_a_config_error(self, datastream: SupportsClaims, key: str) -> None:
        with pytest.raises(ConfigError, match="claim key"):
            datastream.claim(key)


def _take_and_release(plugin: SupportsClaims, key: str) -> bool:
    claim = plugin.claim(key)
    if claim is None:
        return False
    claim.release()
    return True
