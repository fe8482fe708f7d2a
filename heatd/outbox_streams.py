"""The streams of the meter's store-and-forward file (``heatd.meter_store``), named apart
from the code that writes them: the publisher sends each stream to its topic without
loading SQLite, which only a site with a meter needs."""

METER = "meter"
"""Meter records: stored as JSON, sent with their row ``id`` added."""
AUDIT = "audit"
"""Command audit records: sent byte for byte as they were kept."""
RECORDS = "records"
"""The contracts' hash-chained records (``heatd.billing.ledger``); also the MQTT topic
suffix they go to."""
