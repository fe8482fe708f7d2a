"""Heat as a service: contracts, billing-grade hourly records with a hash chain, the
indicators (ERF, seasonal COP, CO2 avoided) and the report built from the records.

The pure parts (``hourly``, ``counter``, ``indicators``) take time and values as
arguments; ``ledger`` keeps the records in SQLite; ``service`` wires them into the daemon.
"""
