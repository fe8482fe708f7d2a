"""Rigs for the tests and the benchmarks: a private mosquitto, pymodbus servers, the demo
site served by the simulator with heatd running against it, and the heartbeat rig. Each
starts what it needs on free ports and stops it."""
