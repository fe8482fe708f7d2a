"""MQTT: publishes the site's state, availability and events, and takes remote commands.

Import from the submodules (``heatd.mqtt.link`` and friends); this package imports nothing
itself, so the site model can depend on ``heatd.mqtt.settings`` without an import cycle.
"""
