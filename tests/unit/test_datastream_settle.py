"""The shared message and settlement types of observml.plugins.datastream, and settle()."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence

import pytest

from observml.errors import ServiceUnavailableError
from observml.plugins.datastream import Message, Settlement, one_at_a_time, settle


def test_message_init_takes_the_fields_in_order_with_their_defaults() -> None:
    # Message writes its __init__ out (speed); it must stay what the dataclass would generate.
    parameters = list(inspect.signature(Message).parameters.values())
    fields = dataclasses.fields(Message)
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters[2:], fields[2:], strict=True):  # after body, headers
        assert parameter.default == field.default, field.name
    assert parameters[0].default is inspect.Parameter.empty


def test_message_keeps_what_it_was_given_and_stays_frozen() -> None:
    message = Message(b"{}", {"k": "v"}, "m-1", True, "application/json", "pump.predict")
    assert message == Message(
        body=b"{}",
        headers={"k": "v"},
        message_id="m-1",
        redelivered=True,
        content_type="application/json",
        queue="pump.predict",
    )
    assert repr(message).startswith("Message(body=b'{}', headers={'k': 'v'}, message_id='m-1'")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'body'"):
        message.body = b"other"  # type: ignore[misc]
    again = dataclasses.replace(message, redelivered=False)
    assert (again.redelivered, again.message_id, again.headers) == (False, "m-1", {"k": "v"})


def test_message_without_headers_gets_its_own_empty_dict() -> None:
    first, second = Message(b"a"), Message(b"b", None)
    assert first.headers == second.headers == {}
    assert first.headers is not second.headers


def accept(_batch: Sequence[Message]) -> None:
    return None


def refuse(_message: Message) -> None:
    raise ValueError("no")


def test_settle_of_one_accepted_message_acks_it_and_cannot_be_changed() -> None:
    outcome = settle(accept, [Message(b"x")], max_bytes=10)
    assert outcome == Settlement(ack=(0,))
    with pytest.raises(TypeError, match="does not support item assignment"):
        outcome.dead[0] = "changed"  # type: ignore[index]
    assert settle(accept, [Message(b"y")]).dead == {}  # the shared one is unchanged


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        pytest.param(accept, Settlement(ack=(0, 1, 2)), id="all-acked"),
        pytest.param(
            lambda batch: {1: "bad row"},
            Settlement(ack=(0, 2), dead={1: "bad row"}),
            id="one-rejected",
        ),
        pytest.param(
            one_at_a_time(refuse),
            Settlement(dead={0: "ValueError: no", 1: "ValueError: no", 2: "ValueError: no"}),
            id="raises",
        ),
    ],
)
def test_settle_decides_each_message(handler: object, expected: Settlement) -> None:
    batch = [Message(b"a"), Message(b"b"), Message(b"c")]
    assert settle(handler, batch) == expected  # type: ignore[arg-type]


def test_settle_requeues_when_a_service_is_down_and_dead_letters_what_is_too_big() -> None:
    def down(_batch: Sequence[Message]) -> None:
        raise ServiceUnavailableError("tracking server away")

    assert settle(down, [Message(b"a")]) == Settlement(requeue=(0,))
    outcome = settle(accept, [Message(b"small"), Message(b"far too big")], max_bytes=5)
    assert outcome.ack == (0,)
    assert list(outcome.dead) == [1]
    assert "over max_message_bytes (5)" in outcome.dead[1]
