"""One typed Python class per contract, over any :class:`~contracts.chain.Chain`.

Writes return the mined :class:`~contracts.chain.Sent`; a revert raises :class:`~contracts.chain.ChainReverted`
with the contract's reason. Attaching to an address checks that the code there is the committed artifact's, so a
misconfigured address fails at once instead of on the first call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Self

from eth_typing import ChecksumAddress
from web3 import Web3

from contracts.chain import Chain, ChainError, Sent

__all__ = ["ARTIFACTS", "Anchor", "LedgerAnchor", "License", "LicenseRegistry", "RevenueSplitter", "artifact"]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@cache
def artifact(name: str) -> dict[str, Any]:
    """The committed build of contract ``name``: ``abi``, ``bytecode``, ``deployedBytecode``, ``compiler``."""
    data: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _bytes32(value: bytes) -> bytes:
    if len(value) != 32:
        raise ValueError("a bytes32 value must be exactly 32 bytes")
    return value


class _Deployed:
    NAME: ClassVar[str]

    def __init__(self, chain: Chain, address: str, *, check_code: bool = True) -> None:
        self.chain = chain
        self.contract = chain.contract(artifact(self.NAME)["abi"], address)
        self.address: ChecksumAddress = self.contract.address
        if check_code:
            self._check_code()

    @classmethod
    def deploy(cls, chain: Chain, *args: Any) -> tuple[Self, Sent]:
        art = artifact(cls.NAME)
        address, sent = chain.deploy(art["abi"], art["bytecode"], *args)
        return cls(chain, address, check_code=False), sent

    def _check_code(self) -> None:
        """The runtime code must equal the artifact's except in the immutables the constructor patched in."""
        expected = bytes.fromhex(artifact(self.NAME)["deployedBytecode"][2:])
        code = self.chain.code(self.address)
        if len(code) != len(expected) or any(e not in (0, c) for e, c in zip(expected, code, strict=True)):
            raise ChainError(f"the contract at {self.address} is not dsnode's {self.NAME} (its code differs); "
                             "check the configured address and chain")


@dataclass(frozen=True, slots=True)
class Anchor:
    """One ``Anchored`` event: ``root`` was anchored for the first ``size`` entries at block time ``timestamp``."""

    size: int
    root: bytes
    timestamp: int
    tx_hash: str
    block: int


class LedgerAnchor(_Deployed):
    NAME = "LedgerAnchor"

    def anchorer(self) -> str:
        return str(self.chain.call(self.contract.functions.anchorer()))

    def anchor(self, size: int, root: bytes) -> Sent:
        return self.chain.send(self.contract.functions.anchor(size, _bytes32(root)))

    def latest(self) -> tuple[int, bytes, int]:
        """``(size, root, timestamp)`` of the most recent anchor; zeros before the first."""
        size, root, timestamp = self.chain.call(self.contract.functions.latest())
        return int(size), bytes(root), int(timestamp)

    def root_at(self, size: int) -> bytes | None:
        root = bytes(self.chain.call(self.contract.functions.rootAt(size)))
        return None if root == bytes(32) else root

    def anchors(self, from_block: int = 0) -> list[Anchor]:
        """Every anchor since ``from_block``, oldest first, from the contract's events."""
        return [Anchor(int(log["args"]["treeSize"]), bytes(log["args"]["root"]), int(log["args"]["timestamp"]),
                       "0x" + bytes(log["transactionHash"]).hex(), int(log["blockNumber"]))
                for log in self.chain.logs(self.contract.events.Anchored, from_block)]


@dataclass(frozen=True, slots=True)
class License:
    dataset: bytes
    buyer: str
    expires_at: int
    revoked: bool


class LicenseRegistry(_Deployed):
    NAME = "LicenseRegistry"

    def register(self, license_hash: bytes, dataset: bytes, buyer: str, expires_at: int) -> Sent:
        return self.chain.send(self.contract.functions.register(
            _bytes32(license_hash), _bytes32(dataset), Web3.to_checksum_address(buyer), expires_at))

    def revoke(self, license_hash: bytes) -> Sent:
        return self.chain.send(self.contract.functions.revoke(_bytes32(license_hash)))

    def license_of(self, license_hash: bytes) -> License | None:
        dataset, buyer, expires_at, revoked = self.chain.call(
            self.contract.functions.licenseOf(_bytes32(license_hash)))
        if int(buyer, 16) == 0:
            return None
        return License(bytes(dataset), str(buyer), int(expires_at), bool(revoked))

    def is_valid(self, license_hash: bytes) -> bool:
        return bool(self.chain.call(self.contract.functions.isValid(_bytes32(license_hash))))


class RevenueSplitter(_Deployed):
    NAME = "RevenueSplitter"
    MAX_PAYEES = 32

    def set_payees(self, dataset: bytes, payees: Sequence[str], shares: Sequence[int]) -> Sent:
        return self.chain.send(self.contract.functions.setPayees(
            _bytes32(dataset), [Web3.to_checksum_address(p) for p in payees], list(shares)))

    def pay(self, dataset: bytes, wei: int) -> Sent:
        return self.chain.send(self.contract.functions.pay(_bytes32(dataset)), value=wei)

    def payees_of(self, dataset: bytes) -> tuple[list[str], list[int]]:
        payees, shares = self.chain.call(self.contract.functions.payeesOf(_bytes32(dataset)))
        return [str(p) for p in payees], [int(s) for s in shares]

    def owed(self, payee: str) -> int:
        return int(self.chain.call(self.contract.functions.owed(Web3.to_checksum_address(payee))))

    def total_owed(self) -> int:
        return int(self.chain.call(self.contract.functions.totalOwed()))
