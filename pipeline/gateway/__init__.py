"""REST gateway: projects the event log into the coordination engine's API."""
