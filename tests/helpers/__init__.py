"""What test modules share: helper functions, stand-in backends and probes, and the session fixtures that
tests/conftest.py registers (``pytest_plugins``), so that a fixture is made once per session however many
modules use it. Test modules import from here, never from one another."""
