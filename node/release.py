"""De-identified ``rows`` releases: a dataset as one licence may see it, built once, verified, memory-mapped.

A release applies the dataset's release policy (restricted to the licence's columns) with the licence's own
pseudonymization key, suppresses the rows of quasi-identifier classes smaller than ``k``, and is then checked
twice before anything is served from it: by the independent k-anonymity check and by a residual scan for direct
identifiers (only columns the provider explicitly released with a recorded reason may hold one). It is written
to ``<data>/releases/<licence>/<fingerprint>.arrow`` and memory-mapped, so later queries cost what a raw scan
costs. The fingerprint covers the policy, the licensed columns and the dataset's hash: any change builds anew.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.ipc as ipc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger import canonical_json
from node.errors import PermissionDenied
from node.storage import DatasetStore
from privacy.kanon import check, suppress
from privacy.pii import scan
from privacy.policy import ReleasePolicy
from privacy.transform import apply_policy

__all__ = ["Release", "ReleaseStore", "licensed_policy", "output_is_k_anonymous"]


def licensed_policy(policy: ReleasePolicy, columns: tuple[str, ...] | None) -> ReleasePolicy:
    """The policy restricted to a licence's columns (the others are left out, i.e. dropped)."""
    if columns is None:
        return policy
    return ReleasePolicy(tuple(r for r in policy.rules if r.column in columns), policy.k)


@dataclass(frozen=True, slots=True)
class Release:
    table: pa.Table
    quasi_identifiers: tuple[str, ...]
    k: int
    suppressed: int


class ReleaseStore:
    def __init__(self, store: DatasetStore, key: Ed25519PrivateKey) -> None:
        self._store = store
        self._root = store.root / "releases"
        self._secret = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Release] = {}

    def pseudonym_key(self, license_id: str) -> bytes:
        """HKDF-SHA256 of the node key, bound to the licence: tokens are stable within a licence and unlinkable
        across licences; they cannot be recomputed without the node key."""
        return HKDF(hashes.SHA256(), 32, salt=b"dsnode pseudonyms v1",
                    info=license_id.encode()).derive(self._secret)

    def get(self, license_id: str, location: str, dataset_sha256: str, policy: ReleasePolicy,
            rows: int | None = None) -> Release:
        """The licence's release of the dataset at ``location`` under ``policy`` (already restricted to the
        licence's columns) over its first ``rows`` rows (all by default), built and verified on first use."""
        fingerprint = hashlib.sha256(canonical_json(
            {"v": 1, "policy": policy.to_json(), "dataset": dataset_sha256, "rows": rows})).hexdigest()[:24]
        qi = policy.quasi_identifiers
        with self._lock:
            cached = self._cache.get((license_id, fingerprint))
            if cached is not None:
                return cached
            path = self._root / license_id / f"{fingerprint}.arrow"
            if path.exists():
                table = ipc.open_file(pa.memory_map(str(path))).read_all()
                suppressed = int((table.schema.metadata or {}).get(b"dsnode.suppressed", b"0"))
            else:
                table, suppressed = self._build(license_id, location, policy, rows)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._store.temp_path(".release")
                meta = {b"dsnode.suppressed": str(suppressed).encode(), b"dsnode.k": str(policy.k).encode()}
                with ipc.new_file(tmp, table.schema.with_metadata(meta)) as writer:
                    for batch in table.to_batches(self._store.batch_rows):
                        writer.write_batch(batch)
                tmp.rename(path)
                table = ipc.open_file(pa.memory_map(str(path))).read_all()
            release = Release(table.replace_schema_metadata(None), tuple(c for c in qi if c in table.column_names),
                              policy.k, suppressed)
            self._cache[(license_id, fingerprint)] = release
            return release

    def _build(self, license_id: str, location: str, policy: ReleasePolicy, rows: int | None
               ) -> tuple[pa.Table, int]:
        raw = self._store.table(location)
        if rows is not None:
            raw = raw.slice(0, rows)
        released = apply_policy(raw.select(policy.released_columns(raw.column_names)), policy,
                                self.pseudonym_key(license_id))
        qi = [c for c in policy.quasi_identifiers if c in released.column_names]
        suppressed = 0
        if qi:  # with no quasi-identifiers there is nothing to link on: k-anonymity holds vacuously
            released, suppressed = suppress(released, qi, policy.k)
            if not check(released, qi, policy.k).ok:
                raise PermissionDenied("the release failed its k-anonymity check", code="k_anonymity_violation")
        allowed = {r.column for r in policy.rules if r.detected and r.role != "direct_identifier"}
        if any(f.column not in allowed for f in scan(released)):
            raise PermissionDenied("the release would expose a direct identifier", code="pii_in_release")
        return released, suppressed

    def forget(self, license_id: str) -> None:
        """Remove a licence's releases (after revocation)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == license_id]:
                del self._cache[key]
            shutil.rmtree(self._root / license_id, ignore_errors=True)


def output_is_k_anonymous(table: pa.Table, release: Release) -> pa.Table:
    """Re-suppress a filtered or limited output over the quasi-identifiers it contains and check it; projection
    alone only merges classes, but a filter or a limit can split them."""
    qi = [c for c in release.quasi_identifiers if c in table.column_names]
    if not qi:
        return table
    table, _ = suppress(table, qi, release.k)
    if not check(table, qi, release.k).ok:
        raise PermissionDenied("the output failed its k-anonymity check", code="k_anonymity_violation")
    return table
