"""The health probe: a round trip through the broker on a short-lived client.

The probe connects (clean start, random id), subscribes to a private topic, publishes one QoS 1
message to it and waits for it to come back: the latency is that of the publish and delivery.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from observml.errors import ServiceUnavailableError
from observml_mqtt.connection import Endpoint, close_client, open_client

__all__ = ["round_trip"]


def round_trip(endpoint: Endpoint, prefix: str, client_prefix: str, timeout: float) -> float:
    """Return the broker's round-trip latency in milliseconds.

    Raises:
        AuthenticationError: The broker refused the login.
        ServiceUnavailableError: The broker is unreachable or did not deliver in ``timeout``.
    """
    token = uuid.uuid4().hex
    topic = f"{prefix}/_health/{token}" if prefix else f"_health/{token}"
    back = threading.Event()
    subscribed = threading.Event()

    def received(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == token.encode():
            back.set()

    def connected(client: mqtt.Client, _present: bool) -> None:
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe(topic, qos=1)

    quick = Endpoint(**{**endpoint.__dict__, "connection_attempts": 1})
    client = open_client(
        quick, f"{client_prefix}-health-{token[:8]}", clean_start=True, on_connected=connected
    )
    client.on_message = received
    try:
        if not subscribed.wait(timeout):
            raise ServiceUnavailableError(f"{endpoint.where}: no SUBACK within {timeout}s")
        started = time.monotonic()
        client.publish(topic, token, qos=1)
        if not back.wait(timeout):
            raise ServiceUnavailableError(
                f"{endpoint.where}: the probe message did not come back within {timeout}s"
            )
        return round((time.monotonic() - started) * 1000, 1)
    finally:
        close_client(client)
