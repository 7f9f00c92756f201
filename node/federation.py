"""A data space of several nodes: peers, signed catalogs followed incrementally, datasets partitioned across nodes.

Trust is pinned per peer: a peer is its name, URLs and Ed25519 public key, added by an operator (the key learned
from the peer's ``/v1/node`` unless given, and kept thereafter). Everything that crosses nodes is signed by the
node it comes from, over RFC 8785 JSON:

- **Catalogs.** ``GET /v1/federation/catalog?since=N`` returns the datasets this node lists that changed since its
  ledger size ``N``, signed. A follower verifies the signature with the pinned key, keeps every document whose
  owner is that peer, and moves its cursor. Listings aggregate the node's own catalog and the followed ones; quotes
  and licences stay with the owning node.
- **Partitions.** A provider uploads part of a dataset to a host node, which signs a statement (partition, owner,
  dataset, rows, SHA-256, schema). The owner verifies it and attaches the partition.
- **Grants.** ``get_flight_info`` on the owner returns one endpoint per node. A remote endpoint's ticket is a
  *grant* signed by the owner: licence, partition, the licensed release policy, the query, an expiry and the
  SHA-256 of the buyer's bearer token. The host serves it to a caller presenting that token or none (the grant
  is then a short-lived capability, so buyers need not hand their token to other nodes). While streaming, the
  host asks the owner whether the licence is still live (signed node-to-node request, at most every
  ``remote_license_ttl_seconds``), so a revocation on the owner stops every endpoint; an owner that cannot answer
  stops the stream too (fail closed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pyarrow as pa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import canonical_json
from node.authz import Resource
from node.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from node.identity import Principal, new_id
from node.models import Dataset, HostedPartition, LedgerEntry, LedgerState, Listing, Partition, Peer, utcnow
from node.storage import FileFormat

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["Federation", "Grant", "GRANT_PREFIX", "sign", "verify"]

log = logging.getLogger("dsnode.federation")

GRANT_PREFIX = b"dsnode-grant/1:"
GRANT_SECONDS = 600  # a remote endpoint's ticket is valid this long after get_flight_info
_CLOCK_SKEW = 300  # node-to-node request signatures are accepted this far from our clock (seconds)
_CATALOG_KINDS = ("dataset.published", "quality.graded", "dataset.partition_added")


def sign(key: Ed25519PrivateKey, obj: Any) -> str:
    return base64.b64encode(key.sign(canonical_json(obj))).decode("ascii")


def verify(public_hex: str, obj: Any, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            base64.b64decode(signature, validate=True), canonical_json(obj))
        return True
    except (InvalidSignature, ValueError):
        return False


def _request_text(method: str, path: str, when: str) -> bytes:
    return f"dsnode-node-request/1\n{method.upper()}\n{path}\n{when}".encode()


@dataclass(frozen=True, slots=True)
class Grant:
    """A verified grant, as a host serves it."""

    owner: str
    partition: str
    license: str
    dataset: str
    buyer: str
    holder: str  # SHA-256 hex of the bearer token it was issued to
    columns: list[str] | None
    where: list[Any]
    limit: int | None
    policy: dict[str, Any]
    rows: int | None
    expires: int


class Federation:
    def __init__(self, node: Node, clock: Callable[[], datetime] = utcnow) -> None:
        self._node = node
        self._clock = clock
        self._live: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._live_lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    # ---- who we are ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._node.settings.node_name

    def http_url(self) -> str:
        return self._node.public_http_url

    def flight_url(self) -> str:
        return self._node.public_flight_url

    def _client(self) -> httpx.Client:
        settings = self._node.settings
        verify_tls: bool | ssl.SSLContext = ssl.create_default_context(cafile=str(settings.tls_ca_file)) \
            if settings.tls_ca_file else True
        return httpx.Client(timeout=settings.peer_timeout_seconds, verify=verify_tls)

    def _signed_get(self, peer: Peer, path: str) -> httpx.Response:
        when = str(int(time.time()))
        headers = {"x-dsnode-node": self.name, "x-dsnode-time": when,
                   "x-dsnode-signature": base64.b64encode(self._node.key.sign(_request_text("GET", path, when)))
                   .decode("ascii")}
        with self._client() as client:
            return client.get(peer.http_url.rstrip("/") + path, headers=headers)

    def authenticate_peer(self, method: str, path: str, headers: Mapping[str, str]) -> Peer:
        """The peer that signed this request; :class:`Unauthenticated` unless a pinned key verifies it."""
        name, when, signature = (headers.get("x-dsnode-node"), headers.get("x-dsnode-time"),
                                 headers.get("x-dsnode-signature"))
        if not (name and when and signature and when.isdigit()) or abs(time.time() - int(when)) > _CLOCK_SKEW:
            raise Unauthenticated("a node-signed request is required", code="unauthenticated")
        peer = self.peer(name)
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(peer.public_key)).verify(
                base64.b64decode(signature, validate=True), _request_text(method, path, when))
        except (InvalidSignature, ValueError):
            raise Unauthenticated("a node-signed request is required", code="unauthenticated") from None
        return peer

    # ---- peers ---------------------------------------------------------------------------------------------
    def peer(self, name: str) -> Peer:
        with self._node.db.reader() as session:
            peer = session.get(Peer, name)
        if peer is None:
            raise NotFound("no such peer node", code="peer_not_found")
        return peer

    def peers(self) -> list[Peer]:
        with self._node.db.reader() as session:
            return list(session.scalars(select(Peer).order_by(Peer.name)))

    def add_peer(self, actor: Principal, http_url: str, public_key: str | None = None,
                 follow: bool = True) -> Peer:
        """Pin a peer: its ``/v1/node`` says its name, key and Flight URL; a given ``public_key`` must match."""
        self._node.authz.authorize(actor.id, "peer.manage", Resource.node())
        if not http_url.startswith(("http://", "https://")):
            raise InvalidArgument("the peer URL must be http:// or https://", code="invalid_peer")
        try:
            with self._client() as client:
                info = client.get(http_url.rstrip("/") + "/v1/node").raise_for_status().json()
            name, key, flight = str(info["name"]), str(info["public_key"]), str(info["flight_url"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"no dsnode node answers at {http_url} ({type(exc).__name__})",
                              code="peer_unreachable") from None
        if public_key is not None and public_key.lower() != key.lower():
            raise PermissionDenied("the peer's key differs from the one given", code="peer_key_mismatch")
        if name == self.name or key == self._node.public_key:
            raise InvalidArgument("a node cannot be its own peer", code="invalid_peer")
        peer = Peer(name=name, http_url=http_url.rstrip("/"), flight_url=flight, public_key=key, follow=follow,
                    cursor=0, added_at=self._clock())
        with self._node.db.transaction() as session:
            if session.get(Peer, name) is not None:
                raise Conflict("a peer with that name exists", code="peer_exists")
            session.add(peer)
            self._node.ledger.append(session, "peer.added", actor.id, name, {
                "peer": name, "http_url": peer.http_url, "flight_url": flight, "public_key": key})
        return peer

    # ---- catalogs ------------------------------------------------------------------------------------------
    def _document(self, ds: Dataset, partitions: list[Partition]) -> dict[str, Any]:
        manifest = ds.manifest or {}
        parts: list[dict[str, Any]] = [{"node": self.name, "rows": ds.num_rows}]
        parts += [{"node": p.peer, "rows": p.num_rows} for p in partitions]
        return {"id": ds.id, "owner_node": self.name, "name": ds.name, "title": ds.title,
                "description": manifest.get("description", ""), "tags": manifest.get("tags", []),
                "schema": ds.schema_fields, "num_rows": ds.num_rows + sum(p.num_rows for p in partitions),
                "partitions": parts,
                "grade": ds.grade, "http_url": self.http_url(), "flight_url": self.flight_url()}

    def catalog(self, since: int) -> dict[str, Any]:
        """This node's listed datasets changed since its ledger size ``since``, signed by the node."""
        with self._node.db.reader() as session:
            size = int(session.scalar(select(LedgerState.size)) or 0)
            since = max(0, min(since, size))
            changed = None if since == 0 else set(session.scalars(select(LedgerEntry.subject).where(
                LedgerEntry.seq >= since, LedgerEntry.seq < size, LedgerEntry.kind.in_(_CATALOG_KINDS))))
            documents = self._documents(session, changed)
        body = {"v": 1, "node": self.name, "public_key": self._node.public_key, "from": since, "to": size,
                "datasets": documents}
        return {"catalog": body, "signature": sign(self._node.key, body)}

    def _documents(self, session: Session, ids: set[str] | None) -> list[dict[str, Any]]:
        """The listings of this node's listed datasets (of those in ``ids``, or all)."""
        query = select(Dataset).where(Dataset.listed.is_(True))
        parts_query = select(Partition)
        if ids is not None:
            query, parts_query = query.where(Dataset.id.in_(ids)), parts_query.where(Partition.dataset_id.in_(ids))
        parts: dict[str, list[Partition]] = {}
        for p in session.scalars(parts_query.order_by(Partition.added_at)):
            parts.setdefault(p.dataset_id, []).append(p)
        return [self._document(ds, parts.get(ds.id, [])) for ds in session.scalars(query.order_by(Dataset.id))]

    def sync(self, name: str | None = None) -> dict[str, int]:
        """Pull the catalogs of the followed peers (or of ``name``); returns the documents taken per peer."""
        taken: dict[str, int] = {}
        for peer in self.peers():
            if (name is not None and peer.name != name) or (name is None and not peer.follow):
                continue
            taken[peer.name] = self._sync_one(peer)
        return taken

    def _sync_one(self, peer: Peer) -> int:
        try:
            with self._client() as client:
                reply = client.get(f"{peer.http_url}/v1/federation/catalog", params={"since": peer.cursor})
                signed = reply.raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"peer {peer.name} did not answer ({type(exc).__name__})",
                              code="peer_unreachable") from None
        body, signature = signed.get("catalog"), signed.get("signature")
        if not isinstance(body, dict) or not isinstance(signature, str) or not verify(peer.public_key, body,
                                                                                        signature):
            raise PermissionDenied(f"the catalog of peer {peer.name} is not signed by its pinned key",
                                   code="catalog_unsigned")
        if body.get("node") != peer.name or not isinstance(body.get("to"), int) or body["to"] < peer.cursor:
            raise PermissionDenied(f"peer {peer.name} sent a catalog for another node or an older state",
                                   code="catalog_invalid")
        docs = [d for d in body.get("datasets", []) if isinstance(d, dict) and d.get("owner_node") == peer.name]
        now = self._clock()
        with self._node.db.transaction() as session:
            for doc in docs:
                row = session.get(Listing, (peer.name, str(doc["id"])))
                if row is None:
                    session.add(Listing(peer=peer.name, dataset_id=str(doc["id"]), document=doc, updated_at=now))
                else:
                    row.document, row.updated_at = doc, now
            stored = session.get(Peer, peer.name)
            if stored is not None:
                stored.cursor, stored.synced_at = int(body["to"]), now
        return len(docs)

    def listings(self, actor: Principal) -> list[dict[str, Any]]:
        """Every dataset listed in this data space as far as this node follows it: its own, then the peers'."""
        with self._node.db.reader() as session:
            own = self._documents(session, None)
            followed = [row.document for row in session.scalars(select(Listing).order_by(Listing.peer,
                                                                                         Listing.dataset_id))]
        return own + followed

    def owner_of(self, dataset_id: str) -> dict[str, Any] | None:
        """The listing of a dataset another node owns, if this node follows it."""
        with self._node.db.reader() as session:
            row = session.scalars(select(Listing).where(Listing.dataset_id == dataset_id)).first()
        return None if row is None else dict(row.document)

    # ---- partitions: the host's side -----------------------------------------------------------------------
    def host_partition(self, actor: Principal, upload: Path, fmt: FileFormat, owner: str, dataset_id: str
                       ) -> dict[str, Any]:
        """Store part of ``owner``'s dataset here; returns the signed statement the owner attaches."""
        self._node.authz.authorize(actor.id, "dataset.publish", Resource.node())
        peer = self.peer(owner)
        part_id = new_id("pt")
        stored = self._node.store.ingest(upload, fmt, part_id)
        schema_b64 = base64.b64encode(stored.schema.serialize().to_pybytes()).decode("ascii")
        try:
            with self._node.db.transaction() as session:
                session.add(HostedPartition(id=part_id, owner_peer=peer.name, dataset_id=dataset_id,
                                            uploaded_by=actor.id, location=stored.location, arrow_schema=schema_b64,
                                            num_rows=stored.num_rows, sha256=stored.sha256,
                                            created_at=self._clock()))
                self._node.ledger.append(session, "partition.hosted", actor.id, part_id, {
                    "partition": part_id, "owner": peer.name, "dataset": dataset_id, "rows": stored.num_rows,
                    "sha256": stored.sha256})
        except Exception:
            self._node.store.remove(part_id)
            raise
        body = {"v": 1, "partition": part_id, "host": self.name, "owner": peer.name, "dataset": dataset_id,
                "rows": stored.num_rows, "sha256": stored.sha256, "schema": _schema_digest(stored.schema)}
        return {"statement": body, "signature": sign(self._node.key, body)}

    def hosted(self, part_id: str) -> HostedPartition:
        with self._node.db.reader() as session:
            part = session.get(HostedPartition, part_id)
        if part is None:
            raise NotFound("no such partition here", code="partition_not_found")
        return part

    # ---- partitions: the owner's side ----------------------------------------------------------------------
    def attach_partition(self, actor: Principal, dataset_id: str, signed: Mapping[str, Any]) -> Partition:
        body, signature = signed.get("statement"), signed.get("signature")
        if not isinstance(body, dict) or not isinstance(signature, str):
            raise InvalidArgument("send the host's statement and signature as received", code="invalid_statement")
        with self._node.db.reader() as session:
            ds = session.get(Dataset, dataset_id)
        if ds is None or ds.owner_id != actor.id:
            raise NotFound("no such dataset of yours", code="dataset_not_found")
        peer = self.peer(str(body.get("host")))
        if not verify(peer.public_key, body, signature):
            raise PermissionDenied("the statement is not signed by the host's pinned key", code="statement_unsigned")
        if body.get("owner") != self.name or body.get("dataset") != dataset_id:
            raise InvalidArgument("the statement is for another node's or another dataset", code="invalid_statement")
        from node.service import schema_from_record

        if body.get("schema") != _schema_digest(schema_from_record(ds)):
            raise InvalidArgument("the partition's schema differs from the dataset's", code="schema_mismatch")
        part = Partition(id=str(body["partition"]), dataset_id=dataset_id, peer=peer.name,
                         num_rows=int(body["rows"]), sha256=str(body["sha256"]), statement=dict(signed),
                         added_at=self._clock())
        with self._node.db.transaction() as session:
            if session.get(Partition, part.id) is not None:
                raise Conflict("this partition is attached already", code="partition_exists")
            session.add(part)
            self._node.ledger.append(session, "dataset.partition_added", actor.id, dataset_id, {
                "dataset": dataset_id, "partition": part.id, "peer": peer.name, "rows": part.num_rows,
                "sha256": part.sha256})
        return part

    def partitions(self, dataset_id: str) -> list[tuple[Partition, Peer]]:
        with self._node.db.reader() as session:
            rows = session.execute(select(Partition, Peer).join(Peer, Peer.name == Partition.peer)
                                   .where(Partition.dataset_id == dataset_id).order_by(Partition.added_at)).all()
        return [(p, peer) for p, peer in rows]

    def grant(self, part: Partition, *, license_id: str, buyer: str, holder: str, columns: list[str] | None,
              where: list[Any], limit: int | None, policy: dict[str, Any], rows: int | None) -> bytes:
        body = {"v": 1, "owner": self.name, "partition": part.id, "license": license_id, "dataset": part.dataset_id,
                "buyer": buyer, "holder": holder, "columns": columns, "where": where, "limit": limit,
                "policy": policy, "rows": rows, "expires": int(time.time()) + GRANT_SECONDS}
        return GRANT_PREFIX + canonical_json({"grant": body, "signature": sign(self._node.key, body)})

    def open_grant(self, ticket: bytes, bearer_sha256: str | None) -> Grant:
        """Verify a grant presented to this node as the host of its partition."""
        try:
            signed = json.loads(ticket[len(GRANT_PREFIX):])
            body, signature = signed["grant"], signed["signature"]
            peer = self.peer(str(body["owner"]))
        except (ValueError, KeyError, TypeError, NotFound):
            raise PermissionDenied("the ticket is not a grant this node can verify", code="invalid_grant") from None
        if not verify(peer.public_key, body, signature):
            raise PermissionDenied("the ticket is not a grant this node can verify", code="invalid_grant")
        if int(body["expires"]) < time.time():
            raise PermissionDenied("the grant expired; ask the owning node for the flight again",
                                   code="grant_expired")
        if bearer_sha256 is not None and not _equal(bearer_sha256, str(body["holder"])):
            # Sent without credentials, the grant is a capability (short-lived, re-checked with the owner); sent
            # with a token, it must be the one it was issued to, so a grant lifted from another buyer fails.
            raise Unauthenticated("present the bearer token the grant was issued to, or none",
                                  code="unauthenticated")
        part = self.hosted(str(body["partition"]))
        if part.owner_peer != peer.name or part.dataset_id != body["dataset"]:
            raise PermissionDenied("the grant names a partition this node does not host for its owner",
                                   code="invalid_grant")
        return Grant(peer.name, part.id, str(body["license"]), str(body["dataset"]), str(body["buyer"]),
                     str(body["holder"]), body.get("columns"), list(body.get("where") or []), body.get("limit"),
                     dict(body["policy"]), body.get("rows"), int(body["expires"]))

    # ---- licence liveness across nodes ---------------------------------------------------------------------
    def license_status(self, license_id: str) -> dict[str, Any]:
        """For a host that serves one of our licences: is it still live (owner side)."""
        state = self._node.authz.refresh_license(license_id)
        if state is None:
            return {"license": license_id, "live": False, "code": "license_not_found"}
        try:
            self._node.authz.authorize(state.buyer_id, "dataset.query", Resource.license(license_id))
        except PermissionDenied as exc:
            return {"license": license_id, "live": False, "code": exc.code}
        return {"license": license_id, "live": True, "code": None}

    def require_live(self, owner: str, license_id: str) -> None:
        """Host side: refuse unless the owning node says the licence is live (cached ``ttl`` seconds)."""
        ttl = self._node.settings.remote_license_ttl_seconds
        key = (owner, license_id)
        now = time.monotonic()
        with self._live_lock:
            cached = self._live.get(key)
        if cached is None or now - cached[0] >= ttl:
            code = self._ask_owner(owner, license_id)
            with self._live_lock:
                self._live[key] = (now, code)
        else:
            code = cached[1]
        if code is not None:
            raise PermissionDenied("the owning node no longer allows this licence", code=code)

    def _ask_owner(self, owner: str, license_id: str) -> str | None:
        peer = self.peer(owner)
        try:
            reply = self._signed_get(peer, f"/v1/federation/licenses/{license_id}")
            status = reply.raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"the owning node {owner} cannot confirm the licence ({type(exc).__name__}); "
                              "retry when it is back", code="owner_unreachable") from None
        return None if status.get("live") is True else str(status.get("code") or "license_revoked")

    # ---- the background follower ---------------------------------------------------------------------------
    def start(self) -> None:
        every = self._node.settings.federation_refresh_seconds
        if every <= 0 or self._worker is not None:
            return

        def run() -> None:
            while not self._stop.wait(every):
                try:
                    self.sync()
                except Exception as exc:  # one unreachable peer must not stop following the others
                    log.warning("catalog sync: %s", exc)

        self._worker = threading.Thread(target=run, name="dsnode-federation", daemon=True)
        self._worker.start()

    def close(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None


def _schema_digest(schema: pa.Schema) -> str:
    fields = [[f.name, str(f.type)] for f in schema]
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
