"""A config value is checked against what its constructor parameter's annotation says."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NewType, Protocol

import pytest

from observml.config import parse_config
from observml.config.validation import check_arguments, check_value
from observml.errors import ConfigError, ConfigProblem
from tests.unit.plugins_for_tests import Formatter, HalfTyped, PagerPlugin, Severity

PAGER = "tests.unit.plugins_for_tests:PagerPlugin"


def problems_of(cls: type[Any], raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Check ``raw`` against ``cls`` under ``plugins.x.config``; return values and messages."""
    problems: list[ConfigProblem] = []
    values = check_arguments(cls, raw, "plugins.x.config", problems)
    return values, [p.render(None) for p in problems]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Clock(Protocol):
    def now(self) -> float: ...


Port = NewType("Port", int)


@dataclass
class Scalars:
    count: int = 0
    share: float = 0.0
    flag: bool = False
    name: str = ""


@dataclass
class Choices:
    mode: Literal["auto", "thread"] = "auto"
    level: Literal[1, 2] = 1
    colour: Colour = Colour.RED
    severity: Level = Level.LOW


@dataclass
class Paths:
    home: Path = Path()
    cache: Path | None = None


@dataclass
class Sequences:
    names: Sequence[str] = ()
    ports: tuple[int, ...] = ()
    pair: tuple[str, int] = ("a", 1)
    tags: set[str] | None = None
    plain: list[Any] | None = None


@dataclass
class Mappings:
    limits: Mapping[str, int] | None = None
    anything: dict[str, Any] | None = None


@dataclass
class Unions:
    either: int | str = 0
    maybe: float | None = None
    nested: list[int] | None = None


@dataclass
class Objects:
    formatter: Formatter | None = None
    clock: Clock | None = None
    kind: type[Formatter] | None = None


@dataclass
class Wrapped:
    port: Annotated[int, "a TCP port"] = 0
    other: Port = Port(0)


# -- scalars -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "converted"),
    [
        pytest.param({"count": "5"}, {"count": 5}, id="int-from-text"),
        pytest.param({"count": 4.0}, {"count": 4}, id="int-from-whole-float"),
        pytest.param({"share": 1}, {"share": 1.0}, id="float-from-int"),
        pytest.param({"flag": "yes"}, {"flag": True}, id="bool-from-text"),
        pytest.param({"name": 5}, {"name": "5"}, id="str-from-number"),
    ],
)
def test_validation_scalars_convert(raw: dict[str, Any], converted: dict[str, Any]) -> None:
    values, problems = problems_of(Scalars, raw)
    assert problems == []
    assert values == converted
    assert [type(v) for v in values.values()] == [type(v) for v in converted.values()]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            {"count": 2.5}, "plugins.x.config.count: expected an integer, got 2.5.", id="int"
        ),
        pytest.param(
            {"flag": 1}, "plugins.x.config.flag: expected true or false, got 1.", id="bool"
        ),
        pytest.param(
            {"name": True},
            "plugins.x.config.name: expected a string, got True. Quote it to mean the text",
            id="str-not-bool",
        ),
    ],
)
def test_validation_scalars_refuse(raw: dict[str, Any], message: str) -> None:
    _, problems = problems_of(Scalars, raw)
    assert len(problems) == 1
    assert problems[0].startswith(message)


# -- literals and enums --------------------------------------------------------------------
def test_validation_literal_and_enum_take_their_values() -> None:
    values, problems = problems_of(
        Choices, {"mode": "thread", "level": "2", "colour": "blue", "severity": "2"}
    )
    assert problems == []
    assert values == {"mode": "thread", "level": 2, "colour": Colour.BLUE, "severity": Level.HIGH}


def test_validation_enum_refuses_a_name_and_lists_the_values() -> None:
    _, problems = problems_of(Choices, {"colour": "RED", "severity": True})
    assert problems == [
        "plugins.x.config.colour: expected one of 'red', 'blue', got 'RED'.",
        "plugins.x.config.severity: expected one of 1, 2, got True.",
    ]


# -- paths ---------------------------------------------------------------------------------
def test_validation_path_from_text() -> None:
    values, problems = problems_of(Paths, {"home": "/var/lib/x", "cache": None})
    assert problems == []
    assert values == {"home": Path("/var/lib/x"), "cache": None}


def test_validation_path_refuses_empty_text_and_lists() -> None:
    _, problems = problems_of(Paths, {"home": "", "cache": ["a"]})
    assert problems == [
        "plugins.x.config.home: expected a path (non-empty text), got ''.",
        "plugins.x.config.cache: expected a path (non-empty text), got ['a'].",
    ]


# -- sequences -----------------------------------------------------------------------------
def test_validation_sequences_check_and_convert_each_item() -> None:
    values, problems = problems_of(
        Sequences,
        {"names": ["a", 2], "ports": ["80", 443], "pair": ["x", "2"], "tags": ["a", "a"]},
    )
    assert problems == []
    assert values == {"names": ["a", "2"], "ports": (80, 443), "pair": ("x", 2), "tags": {"a"}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            {"names": "a,b"},
            "plugins.x.config.names: expected a list of strings, got 'a,b'.",
            id="text-is-not-a-list",
        ),
        pytest.param(
            {"ports": [80, "http"]},
            "plugins.x.config.ports[1]: expected an integer, got 'http'.",
            id="item-path",
        ),
        pytest.param(
            {"pair": ["x"]},
            "plugins.x.config.pair: expected a list of 2 items: a string, an integer, got ['x'].",
            id="fixed-length",
        ),
        pytest.param(
            {"tags": [["a"]]},
            "plugins.x.config.tags[0]: expected a string, got ['a'].",
            id="set-item",
        ),
        pytest.param(
            {"plain": {"a": 1}},
            "plugins.x.config.plain: expected a list, got {'a': 1}.",
            id="mapping-is-not-a-list",
        ),
    ],
)
def test_validation_sequences_refuse(raw: dict[str, Any], message: str) -> None:
    _, problems = problems_of(Sequences, raw)
    assert problems == [message]


# -- mappings ------------------------------------------------------------------------------
def test_validation_mapping_checks_keys_and_values() -> None:
    values, problems = problems_of(Mappings, {"limits": {"a": "1", 2: 3}, "anything": {"k": [1]}})
    assert problems == []
    assert values == {"limits": {"a": 1, "2": 3}, "anything": {"k": [1]}}


def test_validation_mapping_refuses_with_the_value_path() -> None:
    _, problems = problems_of(Mappings, {"limits": {"a": "many"}, "anything": ["k"]})
    assert problems == [
        "plugins.x.config.limits.a: expected an integer, got 'many'.",
        "plugins.x.config.anything: expected a mapping, got ['k'].",
    ]


# -- unions --------------------------------------------------------------------------------
def test_validation_union_keeps_a_value_that_already_fits() -> None:
    values, problems = problems_of(Unions, {"either": "5", "maybe": "0.5", "nested": None})
    assert problems == []
    assert values == {"either": "5", "maybe": 0.5, "nested": None}


def test_validation_union_refusal_lists_every_option() -> None:
    _, problems = problems_of(Unions, {"either": [1], "maybe": "x", "nested": [1, "b"]})
    assert problems == [
        "plugins.x.config.either: expected an integer or a string, got [1].",
        "plugins.x.config.maybe: expected a number, got 'x'.",
        "plugins.x.config.nested[1]: expected an integer, got 'b'.",
    ]


# -- classes -------------------------------------------------------------------------------
def test_validation_class_takes_an_instance_from_python() -> None:
    formatter = Formatter()
    values, problems = problems_of(Objects, {"formatter": formatter, "kind": Formatter})
    assert problems == []
    assert values["formatter"] is formatter


def test_validation_class_refuses_yaml_text_naming_key_and_type() -> None:
    _, problems = problems_of(Objects, {"formatter": "json", "kind": "json"})
    assert problems == [
        "plugins.x.config.formatter: expected a tests.unit.plugins_for_tests.Formatter object,"
        " got 'json'. A config file cannot write one: build the object in Python and pass it"
        " there, or give the parameter a type a config can hold (text, a number, a list, a"
        " mapping).",
        "plugins.x.config.kind: expected a subclass of tests.unit.plugins_for_tests.Formatter,"
        " got 'json'. A config file cannot write one: build the object in Python and pass it"
        " there, or give the parameter a type a config can hold (text, a number, a list, a"
        " mapping).",
    ]


def test_validation_protocol_that_cannot_be_checked_is_left_alone() -> None:
    values, problems = problems_of(Objects, {"clock": "anything"})
    assert problems == []
    assert values == {"clock": "anything"}


def test_validation_annotated_and_newtype_read_as_the_type_inside() -> None:
    values, problems = problems_of(Wrapped, {"port": "80", "other": "x"})
    assert values == {"port": 80}
    assert problems == ["plugins.x.config.other: expected an integer, got 'x'."]


def test_validation_unresolvable_annotation_leaves_only_that_parameter_unchecked() -> None:
    values, problems = problems_of(HalfTyped, {"clock": "utc", "port": "many"})
    assert values == {"clock": "utc"}
    assert problems == ["plugins.x.config.port: expected an integer, got 'many'."]


def test_validation_check_value_keeps_its_three_part_answer() -> None:
    assert check_value(["1", 2], tuple[int, ...]) == (True, (1, 2), "a list of integers")
    assert check_value("a", Sequence[str]) == (False, "a", "a list of strings")


# -- a third-party plugin, through the hub config ------------------------------------------
def test_validation_third_party_plugin_gets_every_problem_with_its_key() -> None:
    text = f"""
plugins:
  mlops: {{type: memory}}
  datastream: {{type: memory}}
  alerting:
    type: "{PAGER}"
    config:
      channels: "#ops"
      template: ""
      severity: urgent
      formatter: json
      retries: {{sms: lots}}
      hours: [8, 18, 3]
"""
    with pytest.raises(ConfigError, match=r"^hub_config.yaml: plugins.alerting.config") as info:
        parse_config(text, source="hub_config.yaml")
    assert [(p.key, p.message.split(",")[0]) for p in info.value.problems] == [
        ("plugins.alerting.config.channels", "expected a list of strings"),
        ("plugins.alerting.config.template", "expected a path (non-empty text)"),
        ("plugins.alerting.config.severity", "expected one of 'low'"),
        (
            "plugins.alerting.config.formatter",
            "expected a tests.unit.plugins_for_tests.Formatter object",
        ),
        ("plugins.alerting.config.retries.sms", "expected an integer"),
        ("plugins.alerting.config.hours", "expected a list of 2 items: an integer"),
    ]


def test_validation_third_party_plugin_is_built_with_converted_values() -> None:
    from observml.config.registry import PluginRegistry, build_plugin

    config = parse_config(
        f"""
plugins:
  mlops: {{type: memory}}
  datastream: {{type: memory}}
  alerting:
    type: "{PAGER}"
    config: {{channels: ["#ops"], template: t.txt, severity: high, hours: ["8", 18]}}
"""
    )
    plugin = build_plugin(PluginRegistry(), config.plugins["alerting"])
    assert isinstance(plugin, PagerPlugin)
    assert plugin.channels == ["#ops"]
    assert plugin.template == Path("t.txt")
    assert plugin.severity is Severity.HIGH
    assert plugin.hours == (8, 18)
