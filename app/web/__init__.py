"""The web layer: the FastAPI app, its middleware and errors, the page, and one folder
per HTTP front (v1, v2) side by side. HTTP lives only here."""
