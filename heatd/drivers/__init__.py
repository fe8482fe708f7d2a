"""Protocol drivers: Modbus TCP/RTU (pymodbus) and OPC UA (asyncua), codecs and read plans.

Drivers import only the standard library, pymodbus and asyncua, so they can be reused by
the daemon and the simulator alike.
"""
