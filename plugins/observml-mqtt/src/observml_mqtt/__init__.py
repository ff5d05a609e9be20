"""observml-mqtt: the MQTT 5 datastream plugin for observml (``type: mqtt``).

Installed beside observml, it registers :class:`MQTTPlugin` under the entry-point group
``observml.datastream`` as ``mqtt``; it uses only observml's public plugin API.
"""

from __future__ import annotations

from observml_mqtt.plugin import MQTTPlugin

__all__ = ["MQTTPlugin"]
