"""dsnode's Solidity contracts: sources in ``src/``, committed artifacts in ``artifacts/``, and the Python side.

:mod:`contracts.chain` holds the chain clients (embedded EVM, JSON-RPC), :mod:`contracts.wrappers` one typed class
per contract. Nothing here imports the node.
"""
