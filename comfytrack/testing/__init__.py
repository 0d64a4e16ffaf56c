"""pytest plugins the test suites share (registered in the root conftest's `pytest_plugins`); never
imported by the app."""
