"""A command flood from another process: as fast as one paho client publishes, QoS 0,
on ``cmd/mode`` and ``cmd/x1``, for a test or a benchmark of what heatd does meanwhile."""

from __future__ import annotations

import asyncio
import sys

_FLOODER = """
import sys, time
import paho.mqtt.client as mqtt
port, seconds, base = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
client.connect("127.0.0.1", port)
while not client.is_connected():  # the CONNACK: QoS 0 before it would be dropped
    client.loop(timeout=0.05)
end, sent = time.monotonic() + seconds, 0
while time.monotonic() < end:
    client.publish(base + "/cmd/mode", b'{"mode": "auto"}', qos=0)
    client.publish(base + "/cmd/x1", b'{"a": 1}', qos=0)
    sent += 2
    if sent % 400 == 0:
        client.loop(timeout=0.01)  # write what is queued (no thread of paho's own)
while client.want_write():
    client.loop(timeout=0.01)
client.disconnect()
client.loop(timeout=0.01)
print(sent)
"""


async def flood(port: int, seconds: float, base: str) -> int:
    """Flood ``base``'s commands on the broker at ``port`` for ``seconds``; returns how
    many commands were sent (raises RuntimeError if the flooder failed)."""
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FLOODER, str(port), str(seconds), base,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await flooder.communicate()
    if flooder.returncode != 0:
        raise RuntimeError(f"the flooder exited with {flooder.returncode}")
    return int(out)
