"""The Solidity contracts, run from their committed artifacts on eth-tester's in-process py-evm chain.

Needs only web3 and eth-tester (no node, no solc): the bytecode is read from ``contracts/artifacts``, which
``contracts/check.sh`` proves is a byte-for-byte rebuild of ``contracts/src``. Skips when web3 is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("web3")
pytest.importorskip("eth_tester")

from eth_tester import EthereumTester, PyEVMBackend  # noqa: E402
from eth_tester.exceptions import TransactionFailed  # noqa: E402
from web3 import Web3  # noqa: E402
from web3.contract import Contract  # noqa: E402
from web3.exceptions import ContractLogicError  # noqa: E402
from web3.logs import DISCARD  # noqa: E402
from web3.providers.eth_tester import EthereumTesterProvider  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "contracts" / "artifacts"
DATASET = Web3.keccak(text="dataset:census-2020")

Deploy = Callable[..., Contract]


def _artifact(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture
def w3() -> Web3:
    return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))


@pytest.fixture
def node(w3: Web3) -> str:
    return str(w3.eth.accounts[0])


@pytest.fixture
def stranger(w3: Web3) -> str:
    return str(w3.eth.accounts[1])


@pytest.fixture
def deploy(w3: Web3, node: str) -> Deploy:
    def _deploy(name: str, *args: Any) -> Contract:
        art = _artifact(name)
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": node}))
        assert receipt["status"] == 1
        return w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])

    return _deploy


def _reverts(reason: str) -> AbstractContextManager[Any]:
    """Expects a revert whose reason string contains ``reason``.

    A failing ``eth_call`` surfaces as web3's ``ContractLogicError``; a failing ``transact`` on eth-tester
    0.14.0b1 surfaces as its ``TransactionFailed("execution reverted: <reason>")`` instead.
    """
    return pytest.raises((ContractLogicError, TransactionFailed), match=reason)


def _root(i: int) -> bytes:
    return Web3.keccak(text=f"root-{i}")


# -- artifacts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["LedgerAnchor", "LicenseRegistry", "RevenueSplitter", "ReentrantPayee"])
def test_artifact_shape_and_evm_version(name: str) -> None:
    art = _artifact(name)
    assert list(art) == ["contractName", "abi", "bytecode", "deployedBytecode", "compiler"]
    assert art["contractName"] == name
    assert art["compiler"]["evmVersion"] == "paris"
    assert art["bytecode"].startswith("0x60") and len(art["deployedBytecode"]) > 2
    assert not _uses_push0(art["deployedBytecode"])


def _uses_push0(code_hex: str) -> bool:
    """True iff the runtime code (CBOR metadata trailer excluded) executes PUSH0 (0x5f), a Shanghai opcode.

    Chains still on Paris/London rules reject such code, which is why the build pins ``evmVersion`` to paris.
    """
    code = bytes.fromhex(code_hex[2:])
    code = code[: -2 - int.from_bytes(code[-2:], "big")]
    pc = 0
    while pc < len(code):
        op = code[pc]
        if op == 0x5F:
            return True
        pc += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return False


def test_deployed_code_matches_artifact(w3: Web3, deploy: Deploy, node: str) -> None:
    anchor = deploy("LedgerAnchor", node)
    code = bytes(w3.eth.get_code(anchor.address))
    expected = bytes.fromhex(_artifact("LedgerAnchor")["deployedBytecode"][2:])
    # The constructor patches immutables (the anchorer) into zero placeholders; every other byte must match.
    assert len(code) == len(expected)
    assert all(e == c or e == 0 for e, c in zip(expected, code, strict=True))
    assert code != expected and anchor.functions.anchorer().call() == node


# -- LedgerAnchor ------------------------------------------------------------------------------------------


def test_node_anchors_and_views_return_it(w3: Web3, deploy: Deploy, node: str) -> None:
    anchor = deploy("LedgerAnchor", node)
    assert anchor.functions.latest().call() == [0, b"\0" * 32, 0]
    receipt = w3.eth.wait_for_transaction_receipt(anchor.functions.anchor(5, _root(5)).transact({"from": node}))
    (event,) = anchor.events.Anchored().process_receipt(receipt, errors=DISCARD)
    block = w3.eth.get_block(receipt["blockNumber"])
    assert event["args"]["treeSize"] == 5
    assert event["args"]["root"] == _root(5)
    assert event["args"]["timestamp"] == block["timestamp"]
    anchor.functions.anchor(9, _root(9)).transact({"from": node})
    assert anchor.functions.rootAt(5).call() == _root(5)
    assert anchor.functions.rootAt(9).call() == _root(9)
    assert anchor.functions.rootAt(7).call() == b"\0" * 32
    size, root, _ = anchor.functions.latest().call()
    assert (size, root) == (9, _root(9))


def test_unauthorized_anchor_reverts_with_its_reason(deploy: Deploy, node: str, stranger: str) -> None:
    """Attack: a third party anchors a forged root to frame the node or hide a rewrite."""
    anchor = deploy("LedgerAnchor", node)
    with _reverts("LedgerAnchor: caller is not the anchorer"):
        anchor.functions.anchor(1, _root(1)).transact({"from": stranger})
    assert anchor.functions.latestSize().call() == 0


@pytest.mark.parametrize("size", [10, 9, 1])
def test_equal_or_shrinking_size_reverts(deploy: Deploy, node: str, size: int) -> None:
    """Attack: the node rewrites history and re-anchors a different root for a size it already anchored."""
    anchor = deploy("LedgerAnchor", node)
    anchor.functions.anchor(10, _root(10)).transact({"from": node})
    with _reverts("LedgerAnchor: tree size must grow"):
        anchor.functions.anchor(size, _root(99)).transact({"from": node})
    assert anchor.functions.rootAt(10).call() == _root(10)


def test_size_zero_and_zero_root_revert(deploy: Deploy, node: str) -> None:
    anchor = deploy("LedgerAnchor", node)
    with _reverts("tree size must grow"):
        anchor.functions.anchor(0, _root(0)).transact({"from": node})
    with _reverts("zero root"):
        anchor.functions.anchor(1, b"\0" * 32).transact({"from": node})


# -- LicenseRegistry ---------------------------------------------------------------------------------------


def test_register_then_revoke(w3: Web3, deploy: Deploy, node: str, stranger: str) -> None:
    reg = deploy("LicenseRegistry", node)
    lic = Web3.keccak(text="licence-1")
    expires = w3.eth.get_block("latest")["timestamp"] + 86_400
    receipt = w3.eth.wait_for_transaction_receipt(
        reg.functions.register(lic, DATASET, stranger, expires).transact({"from": node})
    )
    (event,) = reg.events.Registered().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["buyer"] == stranger and event["args"]["expiresAt"] == expires
    assert reg.functions.licenseOf(lic).call() == (DATASET, stranger, expires, False)
    assert reg.functions.isValid(lic).call() is True

    receipt = w3.eth.wait_for_transaction_receipt(reg.functions.revoke(lic).transact({"from": node}))
    assert len(reg.events.Revoked().process_receipt(receipt, errors=DISCARD)) == 1
    assert reg.functions.licenseOf(lic).call()[3] is True
    assert reg.functions.isValid(lic).call() is False


def test_revoke_twice_reverts(deploy: Deploy, node: str, stranger: str) -> None:
    reg = deploy("LicenseRegistry", node)
    lic = Web3.keccak(text="licence-2")
    reg.functions.register(lic, DATASET, stranger, 2**40).transact({"from": node})
    reg.functions.revoke(lic).transact({"from": node})
    with _reverts("LicenseRegistry: already revoked"):
        reg.functions.revoke(lic).transact({"from": node})


def test_register_twice_and_unknown_revoke_revert(deploy: Deploy, node: str, stranger: str) -> None:
    """Attack: re-registering a revoked licence's hash to un-revoke it."""
    reg = deploy("LicenseRegistry", node)
    lic = Web3.keccak(text="licence-3")
    reg.functions.register(lic, DATASET, stranger, 2**40).transact({"from": node})
    reg.functions.revoke(lic).transact({"from": node})
    with _reverts("LicenseRegistry: already registered"):
        reg.functions.register(lic, DATASET, stranger, 2**41).transact({"from": node})
    with _reverts("LicenseRegistry: unknown licence"):
        reg.functions.revoke(Web3.keccak(text="nope")).transact({"from": node})


def test_only_the_node_registers_and_revokes(deploy: Deploy, node: str, stranger: str) -> None:
    """Attack: a buyer registers itself a licence, or revokes a competitor's."""
    reg = deploy("LicenseRegistry", node)
    lic = Web3.keccak(text="licence-4")
    with _reverts("caller is not the registrar"):
        reg.functions.register(lic, DATASET, stranger, 2**40).transact({"from": stranger})
    reg.functions.register(lic, DATASET, stranger, 2**40).transact({"from": node})
    with _reverts("caller is not the registrar"):
        reg.functions.revoke(lic).transact({"from": stranger})


# -- RevenueSplitter ---------------------------------------------------------------------------------------


def _largest_remainder(value: int, shares: list[int]) -> list[int]:
    """Reference split: floors, then one wei each to the largest discarded fractions, ties to the lower index."""
    total = sum(shares)
    amounts = [value * s // total for s in shares]
    order = sorted(range(len(shares)), key=lambda i: (-(value * shares[i] % total), i))
    for i in order[: value - sum(amounts)]:
        amounts[i] += 1
    return amounts


@pytest.mark.parametrize(
    ("value", "shares", "expected"),
    [
        (1, [1, 1, 1], [1, 0, 0]),
        (2, [1, 1, 1], [1, 1, 0]),
        (1001, [1, 1, 1], [334, 334, 333]),
        (10, [1, 2, 3], [2, 3, 5]),
        (7, [5, 3, 1, 1], [3, 2, 1, 1]),
        (10**18 + 1, [3333, 3333, 3334], None),
        (997, [1] * 32, None),
    ],
)
def test_split_sums_exactly(
    w3: Web3, deploy: Deploy, node: str, value: int, shares: list[int], expected: list[int] | None
) -> None:
    splitter = deploy("RevenueSplitter", node)
    payees = [Web3.to_checksum_address(f"0x{i + 1:040x}") for i in range(len(shares))]
    splitter.functions.setPayees(DATASET, payees, shares).transact({"from": node})
    receipt = w3.eth.wait_for_transaction_receipt(
        splitter.functions.pay(DATASET).transact({"from": w3.eth.accounts[2], "value": value})
    )
    credited = [splitter.functions.owed(p).call() for p in payees]
    assert credited == (expected if expected is not None else _largest_remainder(value, shares))
    assert credited == _largest_remainder(value, shares)
    assert sum(credited) == value == splitter.functions.totalOwed().call() == w3.eth.get_balance(splitter.address)
    events = splitter.events.Credited().process_receipt(receipt, errors=DISCARD)
    assert sum(e["args"]["amount"] for e in events) == value


def test_withdraw_pays_out_and_zeroes(w3: Web3, deploy: Deploy, node: str) -> None:
    splitter = deploy("RevenueSplitter", node)
    alice, bob = w3.eth.accounts[3], w3.eth.accounts[4]
    splitter.functions.setPayees(DATASET, [alice, bob], [3, 1]).transact({"from": node})
    splitter.functions.pay(DATASET).transact({"from": w3.eth.accounts[2], "value": 1000})
    before = w3.eth.get_balance(alice)
    receipt = w3.eth.wait_for_transaction_receipt(splitter.functions.withdraw().transact({"from": alice}))
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(alice) == before + 750 - fee
    assert splitter.functions.owed(alice).call() == 0
    assert w3.eth.get_balance(splitter.address) == 250 == splitter.functions.totalOwed().call()
    with _reverts("RevenueSplitter: nothing owed"):
        splitter.functions.withdraw().transact({"from": alice})


def test_reentrant_payee_cannot_drain(w3: Web3, deploy: Deploy, node: str) -> None:
    """Attack: a payee contract re-enters withdraw() from its receive hook to be paid twice (the DAO drain)."""
    splitter = deploy("RevenueSplitter", node)
    attacker = deploy("ReentrantPayee", splitter.address)
    honest = w3.eth.accounts[3]
    splitter.functions.setPayees(DATASET, [attacker.address, honest], [1, 1]).transact({"from": node})
    splitter.functions.pay(DATASET).transact({"from": w3.eth.accounts[2], "value": 1000})

    attacker.functions.attack().transact({"from": w3.eth.accounts[5]})

    assert attacker.functions.attempts().call() == 1
    assert attacker.functions.reentered().call() == 0
    assert w3.eth.get_balance(attacker.address) == 500
    assert w3.eth.get_balance(splitter.address) == 500 == splitter.functions.owed(honest).call()
    with _reverts("nothing owed"):
        attacker.functions.attack().transact({"from": w3.eth.accounts[5]})


def test_splitter_rejects_bad_configuration(deploy: Deploy, node: str, stranger: str) -> None:
    splitter = deploy("RevenueSplitter", node)
    a, b = Web3.to_checksum_address("0x" + "11" * 20), Web3.to_checksum_address("0x" + "22" * 20)
    cases: list[tuple[str, list[str], list[int], str]] = [
        (stranger, [a], [1], "caller is not the manager"),
        (node, [a, b], [1], "length mismatch"),
        (node, [], [], "bad payee count"),
        (node, [a, a], [1, 1], "duplicate payee"),
        (node, [a, b], [1, 0], "zero share"),
        (node, [a, b], [2**64, 1], "shares too large"),
    ]
    for sender, payees, shares, reason in cases:
        with _reverts(reason):
            splitter.functions.setPayees(DATASET, payees, shares).transact({"from": sender})
    with _reverts("no payees"):
        splitter.functions.pay(DATASET).transact({"from": stranger, "value": 1})
