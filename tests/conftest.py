import pytest
from hypothesis import HealthCheck, settings

from tests.gwharness import Mosquitto

# Machines here are shared and noisy: no per-example deadlines, and slow data
# generation is not a failure. The number of examples stays at hypothesis' default.
settings.register_profile(
    "metrotrace", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("metrotrace")


@pytest.fixture
def broker(tmp_path):
    """A private Mosquitto with persistence on, on a free port (the gateway tests)."""
    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()
