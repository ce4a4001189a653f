from hypothesis import HealthCheck, settings

# As tests/conftest.py (which does not apply here): no deadlines on a shared machine.
# "metrology-quick" is for the NUMBA_DISABLE_JIT=1 re-run, where kernels run as Python.
settings.register_profile(
    "metrotrace", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "metrology-quick", max_examples=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("metrotrace")
