"""Quality-graded, arbitrage-free pricing: pure library (no framework imports); built out by its own issue."""

__all__: list[str] = []
