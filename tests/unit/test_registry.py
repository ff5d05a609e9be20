from __future__ import annotations

import re
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from observml import ExperimentHub
from observml.config import PluginSection, parse_config
from observml.config.registry import BUILTIN_PLUGINS, PluginRegistry, build_plugin
from observml.errors import ConfigError, PluginLoadError, UnknownPluginError


def test_registry_builtins_are_lazy_strings() -> None:
    for names in BUILTIN_PLUGINS.values():
        for target in names.values():
            module, sep, cls = target.partition(":")
            assert sep == ":"
            assert module.startswith("observml.")
            assert cls


def test_registry_resolve_builtin_memory() -> None:
    cls = PluginRegistry().resolve("mlops", "memory")
    assert cls.__name__ == "InMemoryMLOpsPlugin"


def test_registry_unknown_name_lists_known_and_closest() -> None:
    with pytest.raises(UnknownPluginError, match=r"did you mean 'rabbitmq'\?") as info:
        PluginRegistry().resolve("datastream", "rabitmq")
    # Installed plugin distributions (./scripts/test installs observml-mqtt) are known too.
    assert re.search(r"Known: local, memory, (mqtt, )?rabbitmq", str(info.value))
    assert info.value.plugin_type == "datastream"
    assert info.value.name == "rabitmq"
    assert info.value.http_status == 400


def test_registry_path_type_loads_local_class() -> None:
    cls = PluginRegistry().resolve("mlops", "tests.unit.plugins_for_tests:NeedsToken", trusted=True)
    assert cls.__name__ == "NeedsToken"


def test_registry_import_failure_carries_cause() -> None:
    with pytest.raises(PluginLoadError, match="cannot import 'no_such_pkg_42.mod'") as info:
        PluginRegistry().resolve("mlops", "no_such_pkg_42.mod:Cls", trusted=True)
    assert isinstance(info.value.__cause__, ImportError)


def test_registry_config_additions_are_per_instance() -> None:
    one = PluginRegistry({"experiment": {"mine": "tests.unit.plugins_for_tests:NeedsToken"}})
    two = PluginRegistry()
    assert "mine" in one.names("experiment")
    assert "mine" not in two.names("experiment")


def test_registry_snapshot_is_built_once_across_threads() -> None:
    registry = PluginRegistry()
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def grab() -> None:
        barrier.wait()
        seen.append(registry.snapshot())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in seen}) == 1
    assert set(seen[0]) >= {"mlops", "datastream"}  # type: ignore[call-overload]


def test_build_plugin_checks_config_keys() -> None:
    section = PluginSection("mlops", "tests.unit.plugins_for_tests:NeedsToken", {"tokn": "x"})
    with pytest.raises(
        ConfigError, match=r"plugins.mlops.config.tokn: unknown key.*token, retries"
    ):
        build_plugin(PluginRegistry(), section)


def test_build_plugin_converts_types() -> None:
    section = PluginSection(
        "mlops", "tests.unit.plugins_for_tests:NeedsToken", {"token": "t", "retries": "7"}
    )
    plugin = build_plugin(PluginRegistry(), section)
    assert plugin.retries == 7  # type: ignore[attr-defined]


def test_build_plugin_rejects_non_plugins() -> None:
    section = PluginSection("mlops", "tests.unit.plugins_for_tests:NotAPlugin", {})
    with pytest.raises(PluginLoadError, match="is not a plugin: it needs plugin_type"):
        build_plugin(PluginRegistry(), section)


def test_build_plugin_rejects_wrong_slot() -> None:
    section = PluginSection("datastream", "tests.unit.plugins_for_tests:NeedsToken", {"token": "t"})
    with pytest.raises(PluginLoadError, match="is a 'mlops' plugin, configured under"):
        build_plugin(PluginRegistry(), section)


# -- a real distribution on sys.path ---------------------------------------------------------
def _install_dist(root: Path, dist: str, entry_points: str, module: str, code: str) -> None:
    """Write a real installed distribution (.dist-info + module) into ``root``."""
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (info / "RECORD").write_text("")
    (root / f"{module}.py").write_text(textwrap.dedent(code))


PLUGIN_CODE = """
from observml.plugins.memory import InMemoryMLOpsPlugin

class AcmeTracker(InMemoryMLOpsPlugin):
    def __init__(self, endpoint: str = "acme://default") -> None:
        super().__init__(name="acme")
        self.endpoint = endpoint

class AcmeAlerts:
    plugin_type = "alerting"

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def initialize(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def health_check(self):
        return True, {"status": "ok", "channel": self.channel}
"""


@pytest.fixture
def acme_dist(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "site"
    _install_dist(
        root,
        "acme_observml",
        """
        [observml.mlops]
        acme = acme_plugins:AcmeTracker

        [observml.alerting]
        acme-alerts = acme_plugins:AcmeAlerts
        """,
        "acme_plugins",
        PLUGIN_CODE,
    )
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("acme_plugins", None)


@pytest.mark.usefixtures("acme_dist")
def test_entry_point_plugin_picked_by_type_name(write_config: object) -> None:
    registry = PluginRegistry()
    spec = registry.spec("mlops", "acme")
    assert spec.origin == "entry point (acme_observml 1.2.3)"
    config = parse_config(
        """
plugins:
  mlops: {type: acme, config: {endpoint: "acme://plant-7"}}
  datastream: {type: memory}
  alerting: {type: acme-alerts, config: {channel: "#ops"}}
"""
    )
    hub = ExperimentHub(config=config)
    for section in config.enabled_plugins():
        hub.register_plugin(build_plugin(hub.registry, section))
    with hub:
        mlops = hub.get_plugin("mlops")
        assert type(mlops).__name__ == "AcmeTracker"
        assert mlops.endpoint == "acme://plant-7"  # type: ignore[union-attr]
        health = hub.check_plugin_health()
        assert health["alerting"]["details"]["channel"] == "#ops"


@pytest.mark.usefixtures("acme_dist")
def test_entry_point_config_keys_checked() -> None:
    with pytest.raises(ConfigError, match=r"plugins.mlops.config.url: unknown key.*endpoint"):
        parse_config(
            "plugins:\n  mlops: {type: acme, config: {url: x}}\n  datastream: {type: memory}\n"
        )


def test_entry_point_cannot_shadow_builtin(tmp_path: Path) -> None:
    root = tmp_path / "site"
    _install_dist(root, "evil_dist", "[observml.mlops]\nmemory = evil:Evil\n", "evil", "Evil = 1\n")
    sys.path.insert(0, str(root))
    try:
        assert PluginRegistry().spec("mlops", "memory").origin == "built-in"
    finally:
        sys.path.remove(str(root))


def test_entry_point_name_offered_twice_is_an_error(tmp_path: Path) -> None:
    for n in (1, 2):
        _install_dist(
            tmp_path / f"site{n}",
            f"dup_dist{n}",
            "[observml.mlops]\ndup = dupmod:Cls\n",
            f"dupmod{n}",
            "",
        )
        sys.path.insert(0, str(tmp_path / f"site{n}"))
    try:
        with pytest.raises(PluginLoadError, match=r"two distributions offer 'dup'.*dup_dist"):
            PluginRegistry().resolve("mlops", "dup")
    finally:
        for n in (1, 2):
            sys.path.remove(str(tmp_path / f"site{n}"))


def test_entry_point_failing_import_names_cause(tmp_path: Path) -> None:
    root = tmp_path / "site"
    _install_dist(
        root,
        "broken_dist",
        "[observml.mlops]\nbroken = broken_mod:Cls\n",
        "broken_mod",
        "raise RuntimeError('missing licence key')\n",
    )
    sys.path.insert(0, str(root))
    try:
        with pytest.raises(PluginLoadError, match="RuntimeError: missing licence key") as info:
            PluginRegistry().resolve("mlops", "broken")
        assert isinstance(info.value.__cause__, RuntimeError)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("broken_mod", None)
