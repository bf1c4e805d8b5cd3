"""The service's own REST API (/classify, /models, health, metrics)."""
