"""The HTTP control plane (FastAPI). OpenAPI at ``/docs``; errors are ``{"error": {"code", "message"}}``.

:func:`create_app` builds the app around an open :class:`~node.runtime.Node`. The exception handlers registered
here are the only place node errors become HTTP responses.
"""


import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path as PathLike
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import Entry
from node.authz import Resource
from node.errors import Conflict, InvalidArgument, NodeError, NotFound, PayloadTooLarge, Unavailable
from node.identity import Principal
from node.manifest import MODES, LicenseRequest, Manifest
from node.models import ROLES, Peer
from node.service import dataset_json, license_json
from node.storage import FileFormat
from node.trading import QuoteRequest

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["create_app"]

log = logging.getLogger("dsnode.http")
_PARQUET_MAGIC = b"PAR1"
_FORM_OVERHEAD = 1 << 20  # multipart boundaries and the manifest field
_MAX_SEQ = 2**53 - 1


class ParticipantIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["operator", "provider", "buyer", "exchange"]
    address: str | None = Field(default=None, description="EVM address for on-chain payouts (0x…, 20 bytes).")


class PeerIn(BaseModel):
    http_url: str = Field(min_length=8, max_length=500, description="The peer's HTTP base URL.")
    public_key: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$",
                                   description="Its Ed25519 key (hex), to pin it instead of trusting first use.")
    follow: bool = True


def _peer_json(peer: Peer) -> dict[str, Any]:
    return {"name": peer.name, "http_url": peer.http_url, "flight_url": peer.flight_url,
            "public_key": peer.public_key, "follow": peer.follow, "cursor": peer.cursor,
            "synced_at": peer.synced_at.isoformat() if peer.synced_at else None}


class LicenseIn(BaseModel):
    dataset: str
    buyer: str
    mode: Literal["rows", "aggregate", "model"] = "rows"
    columns: list[str] | None = None
    expires_at: datetime | None = None
    terms: dict[str, Any] = Field(default_factory=dict)
    epsilon: int | float | str | None = Field(default=None, description="ε budget (aggregate and model modes)")


class RevokeIn(BaseModel):
    reason: str = Field(default="", max_length=500)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(node: "Node") -> FastAPI:
    service = node.service
    settings = node.settings
    app = FastAPI(title="dsnode", version="0.1.0",
                  description="Control plane of a trusted data-space node. Data flows over Arrow Flight.")
    bearer = HTTPBearer(auto_error=False)

    # ---- the one error mapping ----------------------------------------------------------------------------
    @app.exception_handler(NodeError)
    async def _node_error(request: Request, exc: NodeError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in err.get("loc", ()) if p != "body") for err in exc.errors()})
        return _error(400, "invalid_argument", "invalid request fields: " + ", ".join(f or "body" for f in fields))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated"}
        message = "no such endpoint" if exc.status_code == 404 else "request refused"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(Exception)
    async def _unknown_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:12]
        log.error("unhandled error in %s %s (request id %s)", request.method, request.url.path, request_id,
                  exc_info=exc)
        return _error(500, "internal", f"internal error (request id {request_id})")

    def principal(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        return service.authenticate(creds.credentials if creds else None)

    Caller = Annotated[Principal, Depends(principal)]

    # ---- node ---------------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["node"])
    def healthz() -> dict[str, str]:
        try:
            with node.db.reader() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            raise Unavailable("database unreachable") from exc
        return {"status": "ok"}

    @app.get("/v1/node", tags=["node"])
    def node_info() -> dict[str, Any]:
        return {"name": settings.node_name, "public_key": node.public_key, "http_url": node.public_http_url,
                "flight_url": node.public_flight_url,
                "ledger": {"origin": node.ledger.origin, "verifier_key": node.ledger.verifier.to_key()},
                "modes": list(MODES), "roles": list(ROLES)}

    # ---- participants -------------------------------------------------------------------------------------
    @app.post("/v1/participants", status_code=201, tags=["participants"])
    def create_participant(body: ParticipantIn, caller: Caller) -> dict[str, Any]:
        """Register a participant (operators only). The token is shown in this response only."""
        created = service.create_participant(caller, body.name, body.role, address=body.address)
        p = created.participant
        return {"id": p.id, "name": p.name, "role": p.role, "address": p.address, "token": created.token}

    @app.get("/v1/participants", tags=["participants"])
    def list_participants(caller: Caller) -> list[dict[str, Any]]:
        return [{"id": p.id, "name": p.name, "role": p.role, "address": p.address}
                for p in service.list_participants(caller)]

    @app.get("/v1/me", tags=["participants"])
    def me(caller: Caller) -> dict[str, str]:
        return {"id": caller.id, "name": caller.name, "role": caller.role}

    # ---- datasets -----------------------------------------------------------------------------------------
    @asynccontextmanager
    async def receive_upload(request: Request, *fields: str) -> AsyncIterator[tuple[PathLike, FileFormat,
                                                                                     dict[str, str]]]:
        """A size-checked multipart upload: ``file`` streamed to a temporary file (removed afterwards) and the
        text ``fields``; any malformed part is ``invalid_upload`` and leaves nothing behind."""
        limit = settings.max_upload_bytes
        length = request.headers.get("content-length")
        if length is None:
            raise InvalidArgument("send the upload with a Content-Length", code="length_required")
        if not length.isdigit():
            raise InvalidArgument("bad Content-Length", code="invalid_argument")
        if int(length) > limit + _FORM_OVERHEAD:
            raise PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes")
        expected = "multipart/form-data with 'file' and " + ", ".join(f"'{f}'" for f in fields)
        try:
            form = await request.form(max_files=1, max_fields=len(fields))
        except Exception as exc:  # starlette raises several types for malformed multipart bodies
            raise InvalidArgument(f"the body must be {expected}", code="invalid_upload") from exc
        tmp = node.store.temp_path(".upload")
        try:
            upload, values = form.get("file"), {f: form.get(f) for f in fields}
            if not isinstance(upload, UploadFile) or not all(isinstance(v, str) for v in values.values()):
                raise InvalidArgument(f"the body must be {expected}", code="invalid_upload")
            size, head = 0, b""
            with tmp.open("wb") as out:
                while chunk := await upload.read(1 << 20):
                    if not head:
                        head = chunk[:4]
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes")
                    out.write(chunk)
            yield tmp, _detect_format(upload.filename or "", head), {k: str(v) for k, v in values.items()}
        finally:
            tmp.unlink(missing_ok=True)
            await form.close()

    @app.post("/v1/datasets", status_code=201, tags=["datasets"])
    async def publish_dataset(request: Request, caller: Caller) -> dict[str, Any]:
        """Publish a dataset: multipart ``file`` (Parquet or CSV) and ``manifest`` (JSON). Stored as Parquet."""
        async with receive_upload(request, "manifest") as (tmp, fmt, values):
            try:
                manifest = Manifest.from_json(json.loads(values["manifest"]))
            except ValueError as exc:
                raise InvalidArgument("the manifest must be JSON", code="invalid_manifest") from exc
            ds = await run_in_threadpool(service.publish_dataset, caller, tmp, fmt, manifest)
        return dataset_json(ds)

    # ---- the data space: peers, followed catalogs, partitions -------------------------------------------
    federation = node.federation

    @app.get("/v1/federation/catalog", tags=["federation"])
    def federation_catalog(since: Annotated[int, Query(ge=0, le=_MAX_SEQ)] = 0) -> dict[str, Any]:
        """This node's listed datasets changed since its ledger size ``since``, signed with the node key (public:
        the same datasets are listed to every participant)."""
        return federation.catalog(since)

    @app.get("/v1/federation/licenses/{license_id}", tags=["federation"])
    def federation_license(license_id: str, request: Request) -> dict[str, Any]:
        """Whether a licence of this node is live, for a peer that hosts a partition (node-signed request)."""
        federation.authenticate_peer("GET", request.url.path, request.headers)
        return federation.license_status(license_id)

    @app.post("/v1/peers", status_code=201, tags=["federation"])
    def add_peer(body: PeerIn, caller: Caller) -> dict[str, Any]:
        """Pin a peer node (operators): its name, key and Flight URL come from its ``/v1/node``."""
        return _peer_json(federation.add_peer(caller, body.http_url, body.public_key, body.follow))

    @app.get("/v1/peers", tags=["federation"])
    def list_peers(caller: Caller) -> list[dict[str, Any]]:
        node.authz.authorize(caller.id, "peer.manage", Resource.node())
        return [_peer_json(p) for p in federation.peers()]

    @app.post("/v1/peers/sync", tags=["federation"])
    def sync_peers(caller: Caller) -> dict[str, int]:
        """Pull the followed peers' catalogs now (a serving node also does it every federation_refresh_seconds)."""
        node.authz.authorize(caller.id, "peer.manage", Resource.node())
        return federation.sync()

    @app.get("/v1/listings", tags=["federation"])
    def listings(caller: Caller) -> list[dict[str, Any]]:
        """Every dataset listed in the data space as far as this node follows it; buy at ``http_url``."""
        return federation.listings(caller)

    @app.post("/v1/partitions", status_code=201, tags=["federation"])
    async def host_partition(request: Request, caller: Caller) -> dict[str, Any]:
        """Host part of a peer's dataset: multipart ``file``, ``owner`` (the peer's name) and ``dataset``. Returns
        the statement, signed by this node, that the owner attaches with ``POST /v1/datasets/{id}/partitions``."""
        async with receive_upload(request, "owner", "dataset") as (tmp, fmt, values):
            return await run_in_threadpool(federation.host_partition, caller, tmp, fmt, values["owner"],
                                           values["dataset"])

    @app.post("/v1/datasets/{dataset_id}/partitions", status_code=201, tags=["federation"])
    def attach_partition(dataset_id: str, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Attach a partition a peer hosts (the dataset's owner), with the host's signed statement."""
        part = federation.attach_partition(caller, dataset_id, body)
        return {"id": part.id, "dataset": part.dataset_id, "peer": part.peer, "rows": part.num_rows,
                "sha256": part.sha256}

    @app.get("/v1/datasets", tags=["datasets"])
    def list_datasets(
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: str | None = None,
    ) -> dict[str, Any]:
        items = [dataset_json(ds) for ds in service.list_datasets(caller, limit=limit, after=after)]
        return {"items": items, "next": items[-1]["id"] if len(items) == limit else None}

    @app.get("/v1/datasets/{dataset_id}", tags=["datasets"])
    def get_dataset(dataset_id: str, caller: Caller) -> dict[str, Any]:
        return dataset_json(service.get_dataset(caller, dataset_id))

    @app.get("/v1/datasets/{dataset_id}/quality", tags=["datasets"])
    def dataset_quality(dataset_id: str, caller: Caller) -> dict[str, Any]:
        """The quality report: every metric with its denominator (or why it was not assessed), dimension scores,
        grade A-E, the gates applied, and the hashes recorded on the ledger."""
        return service.quality(caller, dataset_id)

    # ---- trading ------------------------------------------------------------------------------------------
    @app.post("/v1/datasets/{dataset_id}/quotes", status_code=201, tags=["trading"])
    def request_quote(dataset_id: str, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """A signed quote (Ed25519 over its RFC 8785 body, valid 15 minutes) listing every input and price
        component, so anyone can recompute it. Body: ``{"mode", "days", "columns"?, "rows"?, "epsilon"?,
        "purpose"?}``."""
        try:
            ds = service.get_dataset(caller, dataset_id)
        except NotFound:
            foreign = node.federation.owner_of(dataset_id)
            if foreign is None:
                raise
            raise Conflict(f"this dataset belongs to node {foreign['owner_node']}; ask it for a quote at "
                           f"{foreign['http_url']}", code="foreign_dataset") from None
        signed = node.trading.quote(caller, ds, QuoteRequest.from_json(body))
        return signed | {"public_key": node.public_key}

    @app.post("/v1/quotes/{quote_id}/accept", tags=["trading"])
    def accept_quote(quote_id: str, body: dict[str, Any], caller: Caller) -> JSONResponse:
        """Send back the quote and signature received; creates the licence (201) and settles the sale, or returns
        the licence an earlier acceptance created (200)."""
        lic, created = node.trading.accept(caller, quote_id, body)
        payload = license_json(lic, service.receipt(caller, lic.id))
        return JSONResponse(payload, status_code=201 if created else 200)

    @app.get("/v1/datasets/{dataset_id}/shares", tags=["trading"])
    def dataset_shares(dataset_id: str, caller: Caller) -> dict[str, Any]:
        """Contribution shares (exact fractions) with every input and their digest."""
        return node.trading.shares(service.get_dataset(caller, dataset_id))

    @app.post("/v1/datasets/{dataset_id}/contributions", status_code=201, tags=["trading"])
    def add_contribution(dataset_id: str, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Record annotation work (``{"annotation_units": n}``) by the owner or a declared contributor."""
        return node.trading.annotate(caller, service.get_dataset(caller, dataset_id), body.get("annotation_units"))

    @app.get("/v1/datasets/{dataset_id}/settlements", tags=["trading"])
    def dataset_settlements(dataset_id: str, caller: Caller) -> list[dict[str, Any]]:
        ds = service.get_dataset(caller, dataset_id)
        if caller.role != "operator" and caller.id != ds.owner_id:
            raise NotFound("no such dataset", code="dataset_not_found")
        return node.trading.settlements(ds)

    # ---- licences -----------------------------------------------------------------------------------------
    @app.post("/v1/licenses", status_code=201, tags=["licenses"])
    def grant_license(body: LicenseIn, caller: Caller) -> dict[str, Any]:
        """Grant a licence on one of the caller's datasets. The response carries the grant's ledger receipt."""
        request = LicenseRequest.from_json(body.model_dump(), node.clock())
        lic = service.grant_license(caller, request)
        return license_json(lic, service.receipt(caller, lic.id))

    @app.get("/v1/licenses", tags=["licenses"])
    def list_licenses(caller: Caller, dataset: str | None = None) -> list[dict[str, Any]]:
        return [license_json(lic) for lic in service.list_licenses(caller, dataset)]

    @app.get("/v1/licenses/{license_id}", tags=["licenses"])
    def get_license(license_id: str, caller: Caller) -> dict[str, Any]:
        """A licence with the ledger receipt of its grant, proven under the current signed head."""
        lic = service.get_license(caller, license_id)
        return license_json(lic, service.receipt(caller, lic.id))

    @app.get("/v1/licenses/{license_id}/budget", tags=["licenses"])
    def license_budget(license_id: str, caller: Caller) -> dict[str, Any]:
        """The licence's ε budget and its dataset's global cap: total, spent, remaining (exact decimals)."""
        return service.budget(caller, license_id)

    @app.post("/v1/licenses/{license_id}/revoke", tags=["licenses"])
    def revoke_license(license_id: str, caller: Caller, body: RevokeIn | None = None) -> dict[str, Any]:
        """Revoke; the response carries the revocation's ledger receipt."""
        lic = service.revoke_license(caller, license_id, body.reason if body else "")
        return license_json(lic, service.receipt(caller, lic.id, "license.revoked"))

    # ---- ledger -------------------------------------------------------------------------------------------
    ledger = node.ledger

    @app.get("/v1/ledger/head", tags=["ledger"])
    def ledger_head() -> dict[str, Any]:
        """The signed tree head (a C2SP checkpoint note). Public: it holds only a size and a hash."""
        head = ledger.checkpoint()
        return {"origin": ledger.origin, "size": head.size, "root": head.root.hex(), "checkpoint": head.note,
                "signed_at": head.created_at.isoformat(), "verifier_key": ledger.verifier.to_key()}

    @app.get("/v1/chain", tags=["ledger"])
    def chain_status() -> dict[str, Any]:
        """Where this node anchors its ledger and mirrors licences: chain id, account, contract addresses, latest
        anchor. Public, so anyone can check the anchors against ``/v1/ledger/head`` and consistency proofs."""
        link = node.chain
        if link is None:
            raise NotFound("this node anchors on no chain", code="chain_off")
        from contracts.chain import ChainError

        try:
            return link.status()
        except ChainError:
            raise Unavailable("the chain is not reachable or has no contracts of this node yet",
                              code="chain_unavailable") from None

    @app.get("/v1/ledger/entries", tags=["ledger"])
    def ledger_entries(
        caller: Caller,
        start: Annotated[int, Query(ge=0, le=_MAX_SEQ)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        kind: str | None = None,
        subject: str | None = None,
    ) -> dict[str, Any]:
        """Entries in order from ``start`` (operators and exchanges). ``next`` is the ``start`` of the next page."""
        items = service.ledger_page(caller, start, limit, kind, subject)
        return {"items": [_entry_json(e) for e in items],
                "next": items[-1].seq + 1 if len(items) == limit else None}

    @app.get("/v1/ledger/entries/{seq}", tags=["ledger"])
    def ledger_entry(seq: Annotated[int, Path(ge=0, le=_MAX_SEQ)], caller: Caller) -> dict[str, Any]:
        return _entry_json(service.ledger_entry(caller, seq))

    @app.get("/v1/ledger/entries/{seq}/proof", tags=["ledger"])
    def ledger_inclusion(
        seq: Annotated[int, Path(ge=0, le=_MAX_SEQ)],
        size: Annotated[int | None, Query(ge=1, le=_MAX_SEQ)] = None,
    ) -> dict[str, Any]:
        """Inclusion proof of entry ``seq`` in the tree of ``size`` entries (default: the current signed head,
        returned with it). Public: it holds only hashes."""
        note = None
        if size is None:
            head = ledger.checkpoint()
            size, note = head.size, head.note
        if seq >= size:
            raise NotFound("no such ledger entry in a tree of that size", code="entry_not_found")
        proof = ledger.inclusion(seq, size)
        leaf = ledger.nodes([(0, seq)])[(0, seq)]
        return {"seq": seq, "leaf_hash": leaf.hex(), "tree_size": size, "inclusion": [h.hex() for h in proof],
                "checkpoint": note}

    @app.get("/v1/ledger/consistency", tags=["ledger"])
    def ledger_consistency(
        first: Annotated[int, Query(ge=0, le=_MAX_SEQ)],
        second: Annotated[int | None, Query(ge=0, le=_MAX_SEQ)] = None,
    ) -> dict[str, Any]:
        """Proof that the tree of ``first`` entries is a prefix of the tree of ``second`` (default: the current
        signed head, returned with it). Public: it holds only hashes."""
        note = None
        if second is None:
            head = ledger.checkpoint()
            second, note = head.size, head.note
        proof = ledger.consistency(first, second)
        return {"first": first, "second": second, "proof": [h.hex() for h in proof], "checkpoint": note}

    return app


def _entry_json(entry: Entry) -> dict[str, Any]:
    return entry.to_json() | {"hash": entry.hash.hex()}


def _detect_format(filename: str, head: bytes) -> FileFormat:
    if head == _PARQUET_MAGIC:
        return "parquet"
    lower = filename.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"  # will fail as malformed: the magic bytes are missing
    if lower.endswith((".csv", ".txt")) or not lower:
        return "csv"
    raise InvalidArgument("upload a Parquet or CSV file", code="unsupported_format")
