"""``python -m bench.model_control``: model control's memory and swap timings."""
