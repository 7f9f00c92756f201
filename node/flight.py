"""The Arrow Flight data plane.

Every call is authenticated by :class:`_AuthFactory` (``authorization: Bearer <token>``, or the Basic→Bearer
handshake ADBC drivers use) and authorized through the node's one :meth:`Authorizer.authorize`. Every handler is
wrapped by :func:`_guard`, the single place where node errors become Flight errors; the stable error code travels
in ``extra_info``. Unknown exceptions are logged with a request id and returned without their text, because
pyarrow would otherwise send exception text and tracebacks to the client.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.flight as fl

from node.access import DataAccess, Planned
from node.authz import Resource
from node.dp_commands import Command
from node.errors import InvalidArgument, NodeError, PermissionDenied, Unauthenticated, Unavailable
from node.federation import GRANT_PREFIX
from node.identity import Principal
from node.query import RowsCommand, ScanPlan

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["FlightServer", "to_flight_error"]

log = logging.getLogger("dsnode.flight")
F = TypeVar("F", bound=Callable[..., Any])


def to_flight_error(exc: BaseException) -> fl.FlightError:
    """Map any exception to a Flight error that is safe to send."""
    if isinstance(exc, fl.FlightError):  # already mapped (e.g. raised inside a stream)
        return exc
    if isinstance(exc, NodeError):
        extra = exc.code.encode()
        if isinstance(exc, Unauthenticated):
            return fl.FlightUnauthenticatedError(exc.message, extra_info=extra)
        if isinstance(exc, PermissionDenied):
            return fl.FlightUnauthorizedError(exc.message, extra_info=extra)
        if isinstance(exc, Unavailable):
            return fl.FlightUnavailableError(exc.message, extra_info=extra)
        # pyarrow cannot attach extra_info to INVALID_ARGUMENT / NOT_FOUND statuses, so these travel as
        # FlightServerError; the code in extra_info is the contract (docs/PROTOCOL.md).
        return fl.FlightServerError(exc.message, extra_info=extra)
    request_id = uuid.uuid4().hex[:12]
    log.error("unhandled error in Flight call (request id %s)", request_id, exc_info=exc)
    return fl.FlightInternalError(f"internal error (request id {request_id})", extra_info=b"internal")


def _guard(method: F) -> F:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise to_flight_error(exc) from None

    return wrapper  # type: ignore[return-value]


class _HandshakeOnly(fl.ServerAuthHandler):  # type: ignore[misc]
    """Accepts the Handshake RPC so the Basic→Bearer exchange done by :class:`_AuthFactory` can answer it."""

    def authenticate(self, outgoing: fl.ServerAuthSender, incoming: fl.ServerAuthReader) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""


class _AuthMiddleware(fl.ServerMiddleware):  # type: ignore[misc]
    """The caller: a participant of this node, or (``principal`` None) a caller without credentials here or with
    a token this node does not know, whom only a grant signed by a peer that owns the data can authorize
    (``do_get`` on a partition)."""

    def __init__(self, principal: Principal | None, echo_bearer: str | None, bearer_sha256: str | None) -> None:
        self.principal = principal
        self.bearer_sha256 = bearer_sha256
        self._echo = echo_bearer

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._echo}"} if self._echo else {}


class _AuthFactory(fl.ServerMiddlewareFactory):  # type: ignore[misc]
    """Authenticates every call. ``Basic base64(participant:token)`` (the ADBC / ``authenticate_basic_token``
    handshake) is answered with ``Bearer <token>`` for the client to reuse."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @_guard
    def start_call(self, info: fl.CallInfo, headers: dict[str, list[str]]) -> _AuthMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or []
        if not values:
            if info.method == fl.FlightMethod.DO_GET:
                return _AuthMiddleware(None, None, None)  # only a peer's grant, a capability, can succeed
            raise Unauthenticated("missing or invalid credentials")
        scheme, _, credential = values[0].strip().partition(" ")
        if scheme.lower() == "bearer":
            token = credential.strip()
            digest = hashlib.sha256(token.encode()).hexdigest()
            try:
                return _AuthMiddleware(self._node.service.authenticate(token), None, digest)
            except Unauthenticated:
                if info.method != fl.FlightMethod.DO_GET:
                    raise
                return _AuthMiddleware(None, None, digest)  # only a peer's grant can make this call succeed
        if scheme.lower() == "basic":
            credential = credential.strip()
            try:  # Go clients (the ADBC driver) send unpadded base64
                padded = credential + "=" * (-len(credential) % 4)
                user, _, token = base64.b64decode(padded, validate=True).decode("utf-8").partition(":")
            except ValueError as exc:
                raise Unauthenticated("missing or invalid credentials") from exc
            principal = self._node.service.authenticate(token)
            if user not in (principal.id, principal.name):
                raise Unauthenticated("missing or invalid credentials")
            return _AuthMiddleware(principal, token, hashlib.sha256(token.encode()).hexdigest())
        raise Unauthenticated("missing or invalid credentials")


def _principal(context: fl.ServerCallContext) -> Principal:
    middleware = context.get_middleware("auth")
    if middleware is None or middleware.principal is None:
        raise Unauthenticated("missing or invalid credentials")
    principal: Principal = middleware.principal
    return principal


def _bearer(context: fl.ServerCallContext) -> str | None:
    middleware = context.get_middleware("auth")
    return None if middleware is None else middleware.bearer_sha256


class FlightServer(fl.FlightServerBase):  # type: ignore[misc]
    """Serves the node's datasets. Started by :meth:`Node.start_flight`; stopped by :meth:`shutdown`."""

    def __init__(self, node: Node) -> None:
        settings = node.settings
        scheme = "grpc+tls" if settings.tls else "grpc"
        location = f"{scheme}://{settings.flight_host}:{settings.flight_port}"
        tls = {}
        if settings.tls:
            assert settings.tls_cert_file is not None and settings.tls_key_file is not None
            tls = {"tls_certificates": [fl.CertKeyPair(settings.tls_cert_file.read_bytes(),
                                                       settings.tls_key_file.read_bytes())]}
        # The no-op handler only makes the Handshake RPC succeed (without one, gRPC answers UNIMPLEMENTED and
        # ``authenticate_basic_token`` / ADBC fail); _AuthFactory still authenticates every call.
        super().__init__(location, auth_handler=_HandshakeOnly(), middleware={"auth": _AuthFactory(node)}, **tls)
        self._node = node
        self._access = DataAccess(node)
        self.advertised = settings.flight_advertised_uri or f"{scheme}://{settings.flight_host}:{self.port}"
        self._thread = threading.Thread(target=self.serve, name="dsnode-flight", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        super().shutdown()
        self._thread.join(10)

    # ---- Flight methods ------------------------------------------------------------------------------------
    @_guard
    def list_flights(self, context: fl.ServerCallContext, criteria: bytes) -> Iterator[fl.FlightInfo]:
        principal = _principal(context)
        infos = []
        for lic in self._node.service.list_licenses(principal):
            if lic.buyer_id != principal.id or lic.mode != "rows":
                continue
            if not self._node.authz.allowed(principal.id, "dataset.query", Resource.license(lic.id)):
                continue
            command = RowsCommand(license=lic.id, dataset=lic.dataset_id, columns=None).to_json()
            try:
                planned = self._access.plan(principal, command)
            except NodeError:
                continue
            infos.append(self._info(command, planned, principal, _bearer(context)))
        return iter(infos)

    @_guard
    def get_flight_info(self, context: fl.ServerCallContext, descriptor: fl.FlightDescriptor) -> fl.FlightInfo:
        if descriptor.descriptor_type != fl.DescriptorType.CMD:
            raise InvalidArgument("use FlightDescriptor.for_command with a JSON command", code="invalid_command")
        principal = _principal(context)
        planned = self._access.plan(principal, descriptor.command)
        return self._info(descriptor.command, planned, principal, _bearer(context))

    def _info(self, command: bytes, planned: Planned, principal: Principal, bearer: str | None) -> fl.FlightInfo:
        """One endpoint per node holding rows of the dataset: this one, then each partition's host with a grant
        signed by this node (a licence capped to the first N rows covers the partitions in order)."""
        endpoints = [fl.FlightEndpoint(command, [fl.Location(self.advertised)])]
        parts = self._node.federation.partitions(planned.dataset.id) if isinstance(planned.command,
                                                                                   RowsCommand) else []
        left = None if planned.cap is None else planned.cap - planned.dataset.num_rows
        rows = planned.command if isinstance(planned.command, RowsCommand) else None
        for part, peer in parts:
            if rows is None or bearer is None or (left is not None and left <= 0):
                break
            assert planned.policy is not None
            grant = self._node.federation.grant(
                part, license_id=rows.license, buyer=principal.id, holder=bearer,
                columns=list(rows.columns) if rows.columns is not None else None,
                where=[[f.column, f.op, f.value] for f in rows.where], limit=rows.limit,
                policy=planned.policy.to_json(), rows=None if left is None else min(left, part.num_rows))
            endpoints.append(fl.FlightEndpoint(grant, [fl.Location(peer.flight_url)]))
            if left is not None:
                left -= part.num_rows
        return fl.FlightInfo(planned.schema, fl.FlightDescriptor.for_command(command), endpoints, -1, -1)

    @_guard
    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        if ticket.ticket.startswith(GRANT_PREFIX):
            return self._hosted(context, ticket.ticket)
        principal = _principal(context)
        planned = self._access.plan(principal, ticket.ticket)
        query = hashlib.sha256(ticket.ticket).hexdigest()
        command = planned.command
        if isinstance(command, RowsCommand):
            assert planned.scan is not None
            batches = self._access.rows(planned)
            return fl.GeneratorStream(planned.schema, self._stream(principal, command, query, batches, planned.scan))
        try:
            table = (self._access.aggregate(principal, planned, query) if planned.aggregate is not None
                     else self._access.train(principal, planned, query))
        except Exception as exc:
            self._record_access(principal, command, query, 0, 0, exc.code if isinstance(exc, NodeError) else "error")
            raise
        self._record_access(principal, command, query, table.num_rows, 1, "complete")
        return fl.RecordBatchStream(table)

    def _stream(
        self, principal: Principal, command: RowsCommand, query: str, batches: Iterator[pa.RecordBatch],
        plan: ScanPlan,
    ) -> Iterator[pa.RecordBatch]:
        """The plan's batches up to its limit, the licence re-checked before each one."""
        authz = self._node.authz

        def check() -> None:
            authz.refresh_license(command.license)
            authz.authorize(principal.id, "dataset.query", Resource.license(command.license))

        return self._metered(_limited(batches, plan.limit), check, principal.id, command.license, command.dataset,
                             query)

    def _hosted(self, context: fl.ServerCallContext, ticket: bytes) -> fl.FlightDataStream:
        """A partition hosted here for a peer: the peer's grant is the authorization, its licence checked with
        the peer before the stream and again (at most every ``remote_license_ttl_seconds``) before each batch."""
        federation = self._node.federation
        grant = federation.open_grant(ticket, _bearer(context))
        federation.require_live(grant.owner, grant.license)
        schema, batches = self._access.hosted_rows(grant)
        stream = self._metered(batches, lambda: federation.require_live(grant.owner, grant.license), grant.buyer,
                               grant.license, grant.dataset, hashlib.sha256(ticket).hexdigest())
        return fl.GeneratorStream(schema, stream)

    def _metered(self, batches: Iterator[pa.RecordBatch], check: Callable[[], None], actor: str, license_id: str,
                 dataset: str, query: str) -> Iterator[pa.RecordBatch]:
        """Yield the non-empty batches, calling ``check`` before each one so a revocation stops the stream. However
        the stream ends, an ``access`` entry records what left: rows, batches and the outcome."""
        sent = n_batches = 0
        outcome = "cancelled"  # if the client goes away, the generator is closed without another exception
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                check()
                sent += batch.num_rows
                n_batches += 1
                yield batch
            outcome = "complete"
        except Exception as exc:
            outcome = exc.code if isinstance(exc, NodeError) else "error"
            raise to_flight_error(exc) from None
        finally:
            self._record(actor, license_id, dataset, query, sent, n_batches, outcome)

    def _record_access(self, principal: Principal, command: Command, query: str, rows: int, batches: int,
                       outcome: str) -> None:
        self._record(principal.id, command.license, command.dataset, query, rows, batches, outcome)

    def _record(self, actor: str, license_id: str, dataset: str, query: str, rows: int, batches: int,
                outcome: str) -> None:
        try:
            self._node.ledger.record("access", actor, license_id, {
                "license": license_id, "dataset": dataset, "query": query, "rows": rows,
                "batches": batches, "outcome": outcome})
        except Exception:  # the bytes have left already; never mask the stream's own outcome
            log.exception("could not record access license=%s rows=%d outcome=%s", license_id, rows, outcome)


def _limited(batches: Iterator[pa.RecordBatch], limit: int | None) -> Iterator[pa.RecordBatch]:
    """At most ``limit`` rows of ``batches`` (all of them for ``None``)."""
    if limit is None:
        yield from batches
        return
    remaining = limit
    for batch in batches:
        if remaining <= 0:
            return
        if batch.num_rows > remaining:
            batch = batch.slice(0, remaining)
        remaining -= batch.num_rows
        yield batch
