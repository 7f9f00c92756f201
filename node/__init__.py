"""dsnode's framework edge: settings, persistence, authorization, the HTTP and Flight planes, the CLI.

Start at :mod:`node.runtime` (``Node``), which builds every shared object once.
"""

__all__: list[str] = []
