from hypothesis import HealthCheck, settings

# Machines here are shared and noisy: no per-example deadlines, and slow data
# generation is not a failure. The number of examples stays at hypothesis' default.
settings.register_profile(
    "metrotrace", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("metrotrace")
