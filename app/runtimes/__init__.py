"""Engine implementations, one per runtime (see app/engine.py)."""
