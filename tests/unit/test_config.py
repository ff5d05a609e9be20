from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from observml import ConfigError, load_config
from observml.config import DEFAULT_PLUGINS, parse_config

SPEC_PLUGINS = """
# Plugin configurations
plugins:
  # MLOps plugin configuration
  mlops:
    enabled: true
    type: "mlflow"  # Which implementation to use
    config:
      mlflow_uri: "http://localhost:5000"
  # Data stream plugin configuration
  datastream:
    enabled: true
    type: "rabbitmq"
    config:
      host: "localhost"
      port: 5672
      username: "guest"
      password: "guest"
"""

MEMORY = """
plugins:
  mlops: {type: memory}
  datastream: {type: memory}
"""


def test_config_without_file_is_the_embedded_default() -> None:
    config = load_config()
    assert config.source is None
    assert dict(config.plugins) == dict(DEFAULT_PLUGINS)
    assert [s.type for s in config.enabled_plugins()] == ["mlflow", "local"]


def test_config_spec_plugin_section_parses(write_config: Callable[[str], Path]) -> None:
    config = load_config(write_config(SPEC_PLUGINS), check_plugins=False)
    assert config.plugins["mlops"].type == "mlflow"
    assert config.plugins["mlops"].config == {"mlflow_uri": "http://localhost:5000"}
    assert config.plugins["datastream"].config["port"] == 5672
    assert config.source == "hub_config.yaml"


def test_config_found_in_current_directory(write_config: Callable[[str], Path]) -> None:
    write_config(MEMORY)
    assert load_config().plugins["mlops"].type == "memory"


def test_config_path_from_environment(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(MEMORY, name="other.yaml")
    monkeypatch.setenv("OBSERVML_CONFIG", str(path))
    assert load_config().plugins["datastream"].type == "memory"


def test_config_env_expansion_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVML_TEST_NAME", "from-env")
    monkeypatch.delenv("OBSERVML_TEST_UNSET", raising=False)
    config = parse_config(
        """
plugins:
  mlops: {type: memory, config: {name: "${OBSERVML_TEST_NAME}"}}
  datastream: {type: memory, config: {name: "pre-${OBSERVML_TEST_UNSET:-fallback}-post"}}
"""
    )
    assert config.plugins["mlops"].config["name"] == "from-env"
    assert config.plugins["datastream"].config["name"] == "pre-fallback-post"


def test_config_env_expanded_port_becomes_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    from observml.config import GlobalSection
    from observml.config.validation import check_arguments
    from observml.errors import ConfigProblem

    problems: list[ConfigProblem] = []
    values = check_arguments(GlobalSection, {"health_timeout": "2.5"}, "global", problems)
    assert problems == []
    assert values == {"health_timeout": 2.5}


def test_config_unmentioned_plugin_type_keeps_default() -> None:
    config = parse_config("plugins:\n  mlops: {type: memory}\n", check_plugins=False)
    assert config.plugins["datastream"] == DEFAULT_PLUGINS["datastream"]


def test_config_disabled_section_needs_no_type() -> None:
    config = parse_config("plugins:\n  datastream: {enabled: false}\n  mlops: {type: memory}\n")
    assert [s.plugin_type for s in config.enabled_plugins()] == ["mlops"]


def test_config_experiments_section() -> None:
    config = parse_config(
        MEMORY
        + """
experiments:
  - {name: custom, module: mypkg.detect, class: MyDetector}
  - {name: old, module: mypkg.other, class: Other, enabled: false}
"""
    )
    assert config.type_targets() == {"custom": "mypkg.detect:MyDetector"}


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError, match="plugins.mlops.type") as info:
        parse_config(
            """
taskqueue: {}
plugins:
  mlops: {type: mlfow}
  datastream: {type: memory, config: {port: five}}
""",
            source="hub_config.yaml",
        )
    keys = [p.key for p in info.value.problems]
    assert keys == ["taskqueue", "plugins.mlops.type", "plugins.datastream.config.port"]
    assert str(info.value).splitlines()[0].startswith("hub_config.yaml: taskqueue: ")


def test_config_error_names_the_file(write_config: Callable[[str], Path]) -> None:
    path = write_config("plugins: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"^hub_config.yaml: plugins: expected a mapping") as info:
        load_config(path)
    assert info.value.source == "hub_config.yaml"
    assert info.value.key == "plugins"


def test_config_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.yaml")


DS = "plugins:\n  datastream: {type: memory}\n"
MS = "plugins:\n  mlops: {type: memory}\n"
RABBIT = "plugins:\n  mlops: {type: memory}\n  datastream:\n    type: rabbitmq\n    config:\n"

# Each broken config, the key path its single error names, and words the message must contain.
BROKEN = [
    pytest.param(
        MEMORY + "streaming: {workers: 0}\n", "streaming.workers", "positive", id="workers-zero"
    ),
    pytest.param(
        MEMORY + "streaming: {workers: 2.5}\n",
        "streaming.workers",
        "expected an integer",
        id="workers-fraction",
    ),
    pytest.param("plugins: {mlops: {type: memory}\n", "line 2", "invalid YAML", id="bad-yaml"),
    pytest.param(DS + "  mlops:\n   type: memory\n  - x\n", "line 5", "YAML", id="bad-indent"),
    pytest.param("- just\n- a list\n", "", "mapping of sections", id="top-level-list"),
    pytest.param(MEMORY + "plugin: {}\n", "plugin", "unknown key", id="top-level-typo"),
    pytest.param(MEMORY + "version: 2\n", "version", "version: 1", id="bad-version"),
    pytest.param(
        MEMORY + "taskqueue:\n  type: celery\n", "taskqueue", "removed", id="taskqueue-top"
    ),
    pytest.param(
        MEMORY + "  taskqueue: {type: celery}\n",
        "plugins.taskqueue",
        "Delete this section",
        id="taskqueue-plugin",
    ),
    pytest.param("plugins: 5\n", "plugins", "expected a mapping", id="plugins-not-mapping"),
    pytest.param(
        DS + "  mlops: memory\n", "plugins.mlops", "'enabled', 'type'", id="section-is-string"
    ),
    pytest.param(
        DS + "  mlops: {enabled: true}\n", "plugins.mlops.type", "missing", id="missing-type"
    ),
    pytest.param(
        DS + "  mlops: {type: 42}\n", "plugins.mlops.type", "plugin name", id="type-not-string"
    ),
    pytest.param(
        DS + "  mlops: {type: memory, enabled: maybe}\n",
        "plugins.mlops.enabled",
        "true or false",
        id="enabled-not-bool",
    ),
    pytest.param(
        DS + "  mlops: {type: memory, confg: {}}\n",
        "plugins.mlops.confg",
        "unknown key",
        id="section-key-typo",
    ),
    pytest.param(
        DS + "  mlops: {type: memory, config: [1]}\n",
        "plugins.mlops.config",
        "expected a mapping",
        id="config-not-mapping",
    ),
    pytest.param(
        DS + "  mlops: {type: mlfow}\n",
        "plugins.mlops.type",
        "did you mean 'mlflow'",
        id="unknown-plugin-close",
    ),
    pytest.param(
        MS + "  datastream: {type: kafka}\n",
        "plugins.datastream.type",
        "Known: local, memory, ",  # then installed packages' names (mqtt) and rabbitmq
        id="unknown-plugin-lists-known",
    ),
    pytest.param(
        DS + "  mlops: {type: 'nosuchmodule_xyz:Plugin'}\n",
        "plugins.mlops.type",
        "cannot import 'nosuchmodule_xyz'",
        id="path-module-missing",
    ),
    pytest.param(
        DS + "  mlops: {type: 'observml.hub:Nope'}\n",
        "plugins.mlops.type",
        "has no attribute 'Nope'",
        id="path-class-missing",
    ),
    pytest.param(
        DS + "  mlops: {type: memory, config: {nme: x}}\n",
        "plugins.mlops.config.nme",
        "accepts: name",
        id="unknown-config-key",
    ),
    pytest.param(
        MEMORY + "  alerting: {type: slack}\n",
        "plugins.alerting.type",
        "'observml.alerting' entry-point group",
        id="unknown-plugin-type",
    ),
    pytest.param(
        RABBIT + "      port: five\n",
        "plugins.datastream.config.port",
        "expected an integer, got 'five'",
        id="port-not-int",
    ),
    pytest.param(
        RABBIT + "      heartbeat: [1]\n",
        "plugins.datastream.config.heartbeat",
        "expected",
        id="heartbeat-list",
    ),
    pytest.param(
        RABBIT + "      host: '${OBSERVML_SURELY_UNSET_VAR}'\n",
        "plugins.datastream.config.host",
        "OBSERVML_SURELY_UNSET_VAR is not set",
        id="unset-env-var",
    ),
    pytest.param(
        MEMORY + "global: {log_level: LOUD}\n", "global.log_level", "Use one of", id="log-level"
    ),
    pytest.param(
        MEMORY + "global: {health_timeout: -1}\n",
        "global.health_timeout",
        "positive",
        id="negative-timeout",
    ),
    pytest.param(
        MEMORY + "global: {verbose: true}\n",
        "global.verbose",
        "accepts: log_level",
        id="global-unknown-key",
    ),
    pytest.param(MEMORY + "global: [1]\n", "global", "expected a mapping", id="global-not-mapping"),
    pytest.param(
        MEMORY + "experiments: {name: x}\n",
        "experiments",
        "expected a list",
        id="experiments-not-list",
    ),
    pytest.param(
        MEMORY + "experiments:\n  - {name: x, module: y}\n",
        "experiments[0].class",
        "missing",
        id="experiment-missing-class",
    ),
    pytest.param(
        MEMORY + "experiments:\n  - {name: x, module: y, class: Z, extra: 1}\n",
        "experiments[0].extra",
        "unknown key",
        id="experiment-unknown-key",
    ),
    pytest.param(MEMORY + "api: [1]\n", "api", "expected a mapping", id="api-not-mapping"),
    pytest.param(MEMORY + "api: {prot: 1}\n", "api.prot", "accepts: host, port", id="api-key"),
    pytest.param(MEMORY + "api: {port: 70000}\n", "api.port", "1-65535", id="api-port-range"),
    pytest.param(MEMORY + "api: {port: web}\n", "api.port", "an integer", id="api-port-type"),
    pytest.param(
        MEMORY + "api: {max_body_bytes: 10}\n", "api.max_body_bytes", "at least", id="api-body"
    ),
    pytest.param(
        MEMORY + "api: {cors_origins: ['']}\n", "api.cors_origins", "origins", id="api-cors"
    ),
    pytest.param(
        MEMORY + "api: {session_max_age: 10}\n",
        "api.session_max_age",
        "at least 60 seconds",
        id="api-session-max-age",
    ),
]


@pytest.mark.parametrize(("text", "key", "words"), BROKEN)
def test_config_broken_corpus_gives_one_clear_error(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError, match="^hub_config.yaml: ") as info:
        parse_config(text, source="hub_config.yaml")
    error = info.value
    assert len(error.problems) == 1, str(error)
    assert error.problems[0].key.startswith(key)
    assert words in str(error)
    assert "Traceback" not in str(error)
    assert len(BROKEN) >= 25


def test_config_streaming_workers_default_and_setting() -> None:
    assert parse_config(MEMORY).streaming.workers is None
    assert parse_config(MEMORY + "streaming: {workers: 8}\n").streaming.workers == 8


def test_config_missing_required_constructor_key() -> None:
    text = "plugins:\n  mlops:\n    type: 'tests.unit.plugins_for_tests:NeedsToken'\n"
    with pytest.raises(ConfigError, match=r"plugins.mlops.config.token: missing; NeedsToken"):
        parse_config(text)
