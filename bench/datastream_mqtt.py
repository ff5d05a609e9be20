"""MQTTPlugin (observml-mqtt) against a raw paho-mqtt loop doing the same, in one run.

Run as ``python bench/datastream.py --mqtt``. Prints, for ``--messages`` messages of about
``--size`` bytes at QoS 1 on a private Mosquitto (started here, persistence on,
``max_queued_messages 0`` so nothing waiting is dropped):

- publish: ``MQTTPlugin.publish_batch`` / raw paho publishing at QoS 1 with up to ``--window``
  messages in flight, waiting for every PUBACK (goal: at least 0.9);
- consume: ``MQTTPlugin.consume`` / a raw paho durable session reading each message's id from
  its user properties (the plugin hands its handler the id) and acking it (manual ack) in its
  ``on_message``, both with receive maximum ``--prefetch`` (goal: at least 0.9);
- hub end-to-end: one-row messages through a trained fault_detection/iforest, publish of the
  first input to arrival of the last result, over MQTT and over RabbitMQ (127.0.0.1:5672) in the
  same run (``bench/streaming.py``'s setup).

Each figure is the median of ``--repeat`` rounds; raw and plugin alternate which goes first.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from observml_mqtt import MQTTPlugin
from observml_mqtt.properties import MESSAGE_ID_PROPERTY as MESSAGE_ID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from observml.plugins.datastream import Message

MOSQUITTO_CONF = """listener {port} 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location {folder}/
max_queued_messages 0
max_inflight_messages {prefetch}
log_dest file {folder}/mosquitto.log
"""


def start_mosquitto(folder: Path, prefetch: int) -> tuple[Any, int]:
    """Start a private Mosquitto; return (process, port)."""
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    conf = folder / "mosquitto.conf"
    conf.write_text(MOSQUITTO_CONF.format(port=port, folder=folder, prefetch=prefetch))
    process = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"mosquitto did not start; see {folder}/mosquitto.log")


def publish_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [(MESSAGE_ID, uuid.uuid4().hex)]
    return props


# -- raw paho -------------------------------------------------------------------------------
def raw_publish(port: int, topic: str, bodies: list[bytes], window: int) -> float:
    """Publish at QoS 1 with up to ``window`` in flight, wait for every PUBACK; msg/s."""
    done = threading.Event()
    acked = [0]

    def on_publish(*_args: Any) -> None:
        acked[0] += 1
        if acked[0] >= len(bodies):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    for body in bodies:
        client.publish(topic, body, qos=1, properties=publish_properties())
    done.wait(600)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return len(bodies) / elapsed


def raw_session(port: int, client_id: str, topic: str, prefetch: int) -> mqtt.Client:
    """A durable session subscribed to ``topic`` (created before publishing), not connected."""
    client = raw_client(client_id, prefetch)
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port, clean_start=False, properties=connect_props(prefetch))
    client.loop_start()
    client.subscribe(topic, qos=1)
    subscribed.wait(10)
    client.disconnect()
    client.loop_stop()
    return client


def raw_client(client_id: str, prefetch: int) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )


def connect_props(prefetch: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = prefetch
    return props


def raw_consume(port: int, client_id: str, count: int, prefetch: int) -> float:
    """Resume the session, ack each message in ``on_message``; msg/s."""
    done = threading.Event()
    seen = [0]
    last_id = [""]

    def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # The plugin hands its handler each message's id; a consumer that wants it reads it
        # from the user properties paho decoded (the minimum: stop at the first match).
        for key, value in getattr(msg.properties, "UserProperty", ()):
            if key == MESSAGE_ID:
                last_id[0] = value
                break
        client.ack(msg.mid, msg.qos)
        seen[0] += 1
        if seen[0] >= count:
            done.set()

    client = raw_client(client_id, prefetch)
    client.on_message = on_message
    started = time.perf_counter()
    client.connect("127.0.0.1", port, clean_start=False, properties=connect_props(prefetch))
    client.loop_start()
    done.wait(600)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    if not last_id[0]:
        raise SystemExit(
            "raw consume: the messages carried no message id; check publish_properties"
        )
    return count / elapsed


# -- the plugin -----------------------------------------------------------------------------
def plugin_publish(plugin: MQTTPlugin, queue: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    plugin.publish_batch(queue, bodies)
    return len(bodies) / (time.perf_counter() - started)


def plugin_consume(settings: dict[str, Any], queue: str, count: int) -> float:
    stop = threading.Event()
    seen = [0]

    def handler(_message: Message) -> None:
        seen[0] += 1
        if seen[0] >= count:
            stop.set()

    started = time.perf_counter()
    plugin = MQTTPlugin(**settings)
    plugin.connect()
    plugin.consume(queue, handler, stop=stop)
    elapsed = time.perf_counter() - started
    plugin.shutdown()
    return count / elapsed


# -- the hub end to end ----------------------------------------------------------------------
def hub_rate(make: Any, n: int) -> float:
    """The hub's end-to-end rate with datastream plugins from ``make(role)``; msg/s."""
    from streaming import BATCH, bodies, train

    from observml import ExperimentHub, HubConfig, InMemoryMLOpsPlugin
    from observml.config import StreamingSection
    from observml.plugins.datastream import OutgoingMessage

    name = f"bench{uuid.uuid4().hex[:6]}"
    streaming = StreamingSection(batch_size=BATCH, max_wait=0.05, prefetch=BATCH * 3)
    hub = ExperimentHub(config=HubConfig(plugins={}, streaming=streaming), job_isolation="thread")
    hub.register_plugin(InMemoryMLOpsPlugin())
    hub.register_plugin(make("hub"))
    train(hub, name)
    results_plugin = make("results")
    results_plugin.initialize()
    results_plugin.create_queue(f"{name}.predictions")
    producer = make("producer")
    producer.initialize()
    arrived = [0]
    finished = threading.Event()
    stop = threading.Event()

    def take(batch: Any) -> None:
        arrived[0] += len(batch)
        if arrived[0] >= n:
            finished.set()

    reader = threading.Thread(
        target=results_plugin.consume_batch,
        args=(f"{name}.predictions", take),
        kwargs={"batch_size": 500, "max_wait": 0.05, "stop": stop},
        daemon=True,
    )
    reader.start()
    hub.start_streaming(name)
    payload = bodies(n)
    started = time.perf_counter()
    for start in range(0, n, 2000):
        chunk = payload[start : start + 2000]
        producer.publish_batch(f"{name}.predict", [OutgoingMessage(b) for b in chunk])
    if not finished.wait(900):
        raise SystemExit(f"only {arrived[0]} of {n} results")
    rate = n / (time.perf_counter() - started)
    stop.set()
    hub.stop_streaming(name)
    reader.join(30)
    for plugin in (producer, results_plugin):
        plugin.shutdown()
    hub.shutdown()
    return rate


def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="observml-bench-mqtt-"))
    broker, port = start_mosquitto(folder, args.prefetch)
    tag = uuid.uuid4().hex[:8]
    base = {
        "host": "127.0.0.1",
        "port": port,
        "topic_prefix": f"bench/{tag}",
        "prefetch": args.prefetch,
        "confirm_window": args.window,
        "session_expiry": 3600,
    }
    hub_id = f"bench-{tag}-hub"
    producer = MQTTPlugin(**base, client_id=f"bench-{tag}-producer")
    size = max(args.size, 40)
    bodies = [
        (b'{"i": %d, "pad": "' % i).ljust(size - 2, b"x") + b'"}' for i in range(args.messages)
    ]
    rates: dict[str, list[float]] = collections.defaultdict(list)
    try:
        producer.connect()
        for round_ in range(args.repeat):
            raw_topic, queue = f"bench/{tag}/raw/{round_}", f"plugin.r{round_}"
            raw_id = f"bench-{tag}-raw-{round_}"
            raw_session(port, raw_id, raw_topic, args.prefetch)
            setup = MQTTPlugin(**base, client_id=hub_id)
            setup.connect()
            setup.create_queue(queue)
            setup.shutdown()
            order = ["raw", "plugin"] if round_ % 2 == 0 else ["plugin", "raw"]
            for side in order:
                time.sleep(0.5)
                if side == "raw":
                    rates["raw_publish"].append(raw_publish(port, raw_topic, bodies, args.window))
                    rates["raw_consume"].append(
                        raw_consume(port, raw_id, args.messages, args.prefetch)
                    )
                else:
                    rates["plugin_publish"].append(plugin_publish(producer, queue, bodies))
                    rates["plugin_consume"].append(
                        plugin_consume({**base, "client_id": hub_id}, queue, args.messages)
                    )
            print(
                f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items())
            )
        hub_n = args.hub_messages
        mqtt_hub = hub_rate(
            lambda role: MQTTPlugin(**base, client_id=f"bench-{tag}-e2e-{role}"), hub_n
        )
        rabbit_hub = rabbitmq_hub_rate(hub_n)
    finally:
        producer.shutdown()
        broker.terminate()
        broker.wait(30)

    med = {key: statistics.median(values) for key, values in rates.items()}
    print(
        f"\nMQTT DataStream bench: {args.messages:,} messages x {size} B at QoS 1, receive"
        f" maximum {args.prefetch}, window {args.window}, median of {args.repeat} rounds"
    )
    for label, raw, ours in (
        ("publish (PUBACKs)", med["raw_publish"], med["plugin_publish"]),
        ("consume (manual ack)", med["raw_consume"], med["plugin_consume"]),
    ):
        verdict = "ok" if ours / raw >= 0.9 else "BELOW GOAL"
        print(
            f"  {label:<22} raw paho {raw:>8,.0f} msg/s   plugin {ours:>8,.0f} msg/s"
            f"   ratio {ours / raw:5.2f}  (goal >= 0.9) {verdict}"
        )
    print(
        f"  hub end-to-end ({hub_n:,} one-row messages, fault_detection/iforest):"
        f" MQTT {mqtt_hub:,.0f} msg/s, RabbitMQ {rabbit_hub:,.0f} msg/s,"
        f" ratio MQTT / RabbitMQ {mqtt_hub / rabbit_hub:.2f}"
    )


def rabbitmq_hub_rate(n: int) -> float:
    """The same hub run over RabbitMQ on 127.0.0.1:5672 (guest/guest)."""
    from observml.plugins.rabbitmq_plugin import RabbitMQPlugin

    return hub_rate(lambda role: RabbitMQPlugin(host="127.0.0.1"), n)
