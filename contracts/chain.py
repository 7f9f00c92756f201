"""Chain clients: one protocol, an embedded EVM that survives restarts, and JSON-RPC for a real network.

Every write goes through :meth:`Chain.send`: the client builds the transaction (nonce, gas estimate, EIP-1559 fees),
signs it locally with the node's account and waits for its receipt. Reads go through :meth:`Chain.call` and
:meth:`Chain.logs`. A revert surfaces as :class:`ChainReverted` with the contract's reason string, whatever the
backend (eth-tester raises its own ``TransactionFailed``, a JSON-RPC node web3's ``ContractLogicError``).

:class:`EmbeddedChain` is eth-tester's in-process py-evm. Its history is a **journal of signed transactions**
(JSON lines) replayed at start, each at the block timestamp it was first mined at, so a new process rebuilds the
same state, transaction hashes, events and timestamps. Several processes, and several nodes, may share one journal:
a writer takes an exclusive ``flock`` on it, catches up with what others appended, sends, and appends. A torn last
line (a crash mid-write) is ignored on read and cut off by the next writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractEvent, ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxParams, TxReceipt, Wei

__all__ = ["JOURNAL_FORMAT", "Chain", "ChainError", "ChainReverted", "EmbeddedChain", "RpcChain", "Sent"]

JOURNAL_FORMAT = "dsnode-embedded-chain/1"
# eth-tester's genesis funds the keys 1..10 with 1,000,000 ether each; key 1 is the embedded chain's faucet.
_FAUCET_KEY = (1).to_bytes(32, "big")
_FUND_WEI = 10**21  # what an account of the embedded chain is given when it runs low (1,000 ether)
_GENESIS_TIME = 1_700_000_000  # fixed, so that every replica of a journal has the same genesis block


class ChainError(RuntimeError):
    """The chain could not be reached, or refused or lost a transaction; the message says what to do next."""


class ChainReverted(ChainError):
    """A contract call reverted; ``reason`` is the contract's reason string (e.g. ``LedgerAnchor: …``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the transaction reverted: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Sent:
    """A mined, successful transaction."""

    tx_hash: str  # 0x-prefixed hex
    block: int
    gas_used: int
    timestamp: int  # block time, seconds since the epoch
    receipt: TxReceipt
    raw: bytes  # the signed transaction as sent


class Chain(Protocol):
    """What the node needs from an EVM chain. Implementations are thread-safe."""

    @property
    def chain_id(self) -> int: ...

    @property
    def account(self) -> ChecksumAddress: ...

    def contract(self, abi: Sequence[dict[str, Any]], address: str) -> Contract: ...

    def deploy(self, abi: Sequence[dict[str, Any]], bytecode: str, *args: Any) -> tuple[ChecksumAddress, Sent]: ...

    def send(self, fn: ContractFunction, value: int = 0) -> Sent: ...

    def transfer(self, to: str, wei: int) -> Sent: ...

    def call(self, fn: ContractFunction) -> Any: ...

    def logs(self, event: type[ContractEvent] | ContractEvent, from_block: int = 0) -> list[Any]: ...

    def balance(self, address: str) -> int: ...

    def code(self, address: str) -> bytes: ...

    def close(self) -> None: ...


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    for prefix in ("execution reverted: ", "execution reverted"):
        if text.startswith(prefix):
            return text[len(prefix):] or "no reason given"
    return text


class _Web3Chain:
    """Shared by both clients: local signing, fee and nonce handling, revert translation, one lock."""

    def __init__(self, w3: Web3, key: bytes) -> None:
        self.w3 = w3
        self._acct: LocalAccount = Account.from_key(key)
        self._lock = threading.RLock()
        self._chain_id: int | None = None

    # -- the protocol ----------------------------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            with self._lock:
                self._chain_id = int(self._guard(lambda: self.w3.eth.chain_id))
        return self._chain_id

    @property
    def account(self) -> ChecksumAddress:
        return self._acct.address

    def contract(self, abi: Sequence[dict[str, Any]], address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=list(abi))

    def deploy(self, abi: Sequence[dict[str, Any]], bytecode: str, *args: Any) -> tuple[ChecksumAddress, Sent]:
        factory = self.w3.eth.contract(abi=list(abi), bytecode=HexStr(bytecode))
        sent = self._transact(lambda params: factory.constructor(*args).build_transaction(params), 0)
        address = sent.receipt["contractAddress"]
        if address is None:
            raise ChainError("the deployment mined without creating a contract")
        return address, sent

    def send(self, fn: ContractFunction, value: int = 0) -> Sent:
        return self._transact(lambda params: fn.build_transaction(params), value)

    def transfer(self, to: str, wei: int) -> Sent:
        """Send ``wei`` of the chain's coin from the node's account (e.g. to fund another account)."""
        target = Web3.to_checksum_address(to)
        return self._transact(lambda params: params | {"to": target, "gas": 21_000}, wei)

    def call(self, fn: ContractFunction) -> Any:
        with self._lock:
            self._refresh()
            return self._guard(fn.call)

    def logs(self, event: type[ContractEvent] | ContractEvent, from_block: int = 0) -> list[Any]:
        with self._lock:
            self._refresh()
            return list(self._guard(lambda: event.get_logs(from_block=from_block)))

    def balance(self, address: str) -> int:
        with self._lock:
            self._refresh()
            return int(self._guard(lambda: self.w3.eth.get_balance(Web3.to_checksum_address(address))))

    def code(self, address: str) -> bytes:
        with self._lock:
            self._refresh()
            return bytes(self._guard(lambda: self.w3.eth.get_code(Web3.to_checksum_address(address))))

    def close(self) -> None:
        pass

    # -- for subclasses --------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Bring the local view up to date (the embedded chain replays what other processes appended)."""

    def _submit(self, signer: LocalAccount, build: Any, value: int) -> Sent:
        params: TxParams = {"from": signer.address, "value": Wei(value), "chainId": self.chain_id,
                            "nonce": self.w3.eth.get_transaction_count(signer.address, "pending")}
        tx = self._guard(lambda: build(params))
        if "gasPrice" not in tx and "maxFeePerGas" not in tx:
            tip = self.w3.eth.max_priority_fee
            tx["maxPriorityFeePerGas"] = tip
            tx["maxFeePerGas"] = Wei(2 * int(self.w3.eth.get_block("latest")["baseFeePerGas"]) + tip)
        signed = signer.sign_transaction(tx)
        tx_hash = self._guard(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
        receipt = self._guard(lambda: self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120))
        if receipt["status"] != 1:
            raise ChainReverted("the transaction failed when mined (out of gas or a revert)")
        block = self.w3.eth.get_block(receipt["blockNumber"])
        return Sent("0x" + bytes(tx_hash).hex(), int(receipt["blockNumber"]), int(receipt["gasUsed"]),
                    int(block["timestamp"]), receipt, bytes(signed.raw_transaction))

    def _transact(self, build: Any, value: int) -> Sent:
        with self._lock:
            return self._submit(self._acct, build, value)

    @staticmethod
    def _guard(action: Any) -> Any:
        """Run a web3 action, translating reverts and transport failures into the chain errors."""
        try:
            return action()
        except ContractLogicError as exc:
            raise ChainReverted(_reason(exc)) from None
        except Exception as exc:
            if type(exc).__name__ == "TransactionFailed":  # eth-tester's revert
                raise ChainReverted(_reason(exc)) from None
            if isinstance(exc, ChainError | TypeError | AttributeError | KeyError):
                raise  # ours, or a programming error: not the chain's refusal
            raise ChainError(f"the chain did not accept the request ({type(exc).__name__}: {exc})") from None


class RpcChain(_Web3Chain):
    """Any EVM JSON-RPC endpoint (Geth, Besu, Hardhat, consortium EVMs); the account pays its own gas."""

    def __init__(self, url: str, key: bytes, timeout: float = 30.0) -> None:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        super().__init__(w3, key)
        self.url = url
        try:
            self.chain_id  # noqa: B018 - fail at open, with a clear message, when nothing answers
        except ChainError as exc:
            raise ChainError(f"no EVM JSON-RPC node answers at {url}: {exc}; start it or fix DSNODE_CHAIN_RPC_URL")\
                from None


class EmbeddedChain(_Web3Chain):
    """eth-tester's in-process py-evm, persisted as a journal of signed transactions (see the module text)."""

    def __init__(self, journal: Path, key: bytes) -> None:
        self.journal = journal
        journal.parent.mkdir(parents=True, exist_ok=True)
        self._faucet: LocalAccount = Account.from_key(_FAUCET_KEY)
        self._offset = 0  # bytes of the journal applied to the replica
        self._applied: list[str] = []  # hashes of the applied transactions, in order
        super().__init__(self._fresh_w3(), key)
        with self._locked(exclusive=False):
            self._catch_up()

    # -- replica ---------------------------------------------------------------------------------------------
    @staticmethod
    def _fresh_w3() -> Web3:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3.providers.eth_tester import EthereumTesterProvider

        params = PyEVMBackend.generate_genesis_params({"timestamp": _GENESIS_TIME})
        return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend(genesis_parameters=params))))

    def _backend_chain(self) -> Any:
        provider = cast(Any, self.w3.provider)
        return provider.ethereum_tester.backend.chain

    def _set_next_timestamp(self, timestamp: int) -> None:
        chain = self._backend_chain()
        chain.header = chain.header.copy(timestamp=timestamp)

    def _head_timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def _rebuild(self) -> None:
        self.w3 = self._fresh_w3()
        self._offset = 0
        self._applied = []
        self._catch_up()

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[IO[bytes]]:
        with self._lock, open(self.journal, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _records(self) -> list[tuple[int, dict[str, Any]]]:
        """Complete journal lines after what was applied: ``(end offset, record)``."""
        with open(self.journal, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        out: list[tuple[int, dict[str, Any]]] = []
        pos = self._offset
        for line in data.split(b"\n")[:-1]:  # the part after the last newline is a torn write, or nothing
            pos += len(line) + 1
            try:
                out.append((pos, json.loads(line)))
            except ValueError:
                raise ChainError(f"the embedded chain journal {self.journal} is corrupt at byte {pos - len(line) - 1}"
                                 "; restore it from a backup") from None
        return out

    def _catch_up(self) -> None:
        for end, record in self._records():
            if "format" in record:
                if record["format"] != JOURNAL_FORMAT:
                    raise ChainError(f"{self.journal} is not a dsnode embedded chain journal")
            else:
                self._replay(record)
            self._offset = end

    def _replay(self, record: dict[str, Any]) -> None:
        tester = cast(Any, self.w3.provider).ethereum_tester  # straight to eth-tester: no web3 middleware
        try:
            self._set_next_timestamp(int(record["timestamp"]))
            tx_hash = tester.send_raw_transaction(record["raw"])
            ok = tester.get_transaction_receipt(tx_hash)["status"] == 1 and tx_hash == record.get("hash")
        except Exception:  # an invalid signature, a sender that cannot pay, a malformed record …
            ok = False
        if not ok:
            raise ChainError(f"the embedded chain journal {self.journal} does not replay at transaction "
                             f"{record['hash']}; it was edited or written by another version")
        self._applied.append(record["hash"])

    def _refresh(self) -> None:
        if self.journal.stat().st_size != self._offset:
            with self._locked(exclusive=False):
                self._catch_up()

    # -- writing ---------------------------------------------------------------------------------------------
    def _transact(self, build: Any, value: int) -> Sent:
        with self._locked(exclusive=True) as fh:
            self._catch_up()
            size = os.fstat(fh.fileno()).st_size
            if size != self._offset:  # a torn last line left by a crashed writer
                fh.truncate(self._offset)
            if self._offset == 0:
                self._append(fh, {"format": JOURNAL_FORMAT, "genesis_time": _GENESIS_TIME})
            try:
                if self.w3.eth.get_balance(self.account) < _FUND_WEI // 10:
                    self._journaled(fh, self._faucet, lambda params: params | {"to": self.account, "gas": 21_000},
                                    _FUND_WEI)
                return self._journaled(fh, self._acct, build, value)
            except ChainReverted:
                raise  # refused before anything was sent: the replica is unchanged
            except BaseException:
                self._rebuild()  # the replica may hold a transaction the journal does not
                raise

    def _journaled(self, fh: IO[bytes], signer: LocalAccount, build: Any, value: int) -> Sent:
        self._set_next_timestamp(max(int(time.time()), self._head_timestamp() + 1))
        sent = self._submit(signer, build, value)
        self._append(fh, {"hash": sent.tx_hash, "timestamp": sent.timestamp, "raw": "0x" + sent.raw.hex()})
        self._applied.append(sent.tx_hash)
        return sent

    def _append(self, fh: IO[bytes], record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        fh.seek(0, os.SEEK_END)
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
        self._offset += len(line)

    @property
    def transactions(self) -> list[str]:
        """Hashes of every transaction in the journal, in order (what a replay re-executes)."""
        with self._lock:
            self._refresh()
            return list(self._applied)
