# Simulated instruments for host runs under the MicroPython unix port: they offer the
# same methods as the drivers in metro/drivers, so the application cannot tell.
