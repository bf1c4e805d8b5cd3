"""The service's protocol fronts side by side on one server (python -m bench.protocols)."""
