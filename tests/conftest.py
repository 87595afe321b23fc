"""Test configuration: 8 emulated CPU devices, set before JAX is imported anywhere."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")



def pytest_configure(config):
  config.addinivalue_line("markers", "slow: longer tests, excluded from `make test` (run by `make test-all`)")
