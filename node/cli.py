"""``dsnode`` command line. Every command takes ``--home`` (or ``DSNODE_HOME``)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ledger import LedgerTampered, NoteError, NoteVerifier, Receipt, ReceiptError, verify_receipt
from node.errors import NodeError, NotFound
from node.identity import Principal
from node.manifest import LicenseRequest, Manifest
from node.runtime import Node, init_home, is_initialized
from node.service import dataset_json, license_json
from node.settings import Settings
from node.storage import FileFormat
from node.trading import QuoteRequest

__all__ = ["app", "main"]

app = typer.Typer(help="dsnode: a trusted data-space node.", no_args_is_help=True, add_completion=False)
participant_app = typer.Typer(help="Register and list participants.", no_args_is_help=True)
dataset_app = typer.Typer(help="Publish and list datasets.", no_args_is_help=True)
license_app = typer.Typer(help="Grant, list and revoke licences.", no_args_is_help=True)
ledger_app = typer.Typer(help="Verify the ledger; print its signed head, entries' proofs; check receipts.",
                         no_args_is_help=True)
app.add_typer(participant_app, name="participant")
app.add_typer(dataset_app, name="dataset")
app.add_typer(license_app, name="license")
app.add_typer(ledger_app, name="ledger")
chain_app = typer.Typer(help="The chain the node anchors its ledger on.", no_args_is_help=True)
app.add_typer(chain_app, name="chain")
peer_app = typer.Typer(help="Other nodes of the data space: pin, list, pull their catalogs.", no_args_is_help=True)
app.add_typer(peer_app, name="peer")
partition_app = typer.Typer(help="Datasets split across nodes: host a part here, attach a part hosted elsewhere.",
                            no_args_is_help=True)
app.add_typer(partition_app, name="partition")
space_app = typer.Typer(help="A local data space of several nodes on loopback.", no_args_is_help=True)
app.add_typer(space_app, name="space")
quote_app = typer.Typer(help="Ask for a signed quote, accept it.", no_args_is_help=True)
app.add_typer(quote_app, name="quote")

TAMPERED_EXIT = 3  # `ledger verify` / `ledger check-receipt`: the record is not what was signed

console = Console()
err = Console(stderr=True)

Home = Annotated[Path | None, typer.Option("--home", envvar="DSNODE_HOME", help="Node home directory.")]
Token = Annotated[str, typer.Option("--token", envvar="DSNODE_TOKEN", help="Your API token.")]


@contextmanager
def _node(home: Path | None, **overrides: Any) -> Iterator[Node]:
    node = Node.open(Settings.load(home=home, **overrides))
    try:
        yield node
    finally:
        node.close()


def _run(fn: Callable[[], None]) -> None:
    """Run a command body, turning refusals into one clear line and an exit code."""
    try:
        fn()
    except NodeError as exc:
        err.print(f"[red]error[/] {escape(f'[{exc.code}]')} {escape(exc.message)}")
        raise typer.Exit(2) from None
    except (FileNotFoundError, FileExistsError, PermissionError, ValueError) as exc:
        err.print(f"[red]error[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except RuntimeError as exc:
        chain = sys.modules.get("contracts.chain")  # imported only by nodes that used their chain
        if chain is None or not isinstance(exc, chain.ChainError):
            raise
        err.print(f"[red]chain error[/] {escape(str(exc))}")
        raise typer.Exit(4) from None


def _emit_json(obj: Any, out: Path | None) -> None:
    """Print ``obj`` as JSON and, with ``out``, also save it there (for a later command or a third party)."""
    text = json.dumps(obj, ensure_ascii=False, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    console.print_json(text)


def _me(node: Node, token: str) -> Principal:
    return node.service.authenticate(token)


@app.command()
def init(
    home: Home = None,
    if_needed: Annotated[bool, typer.Option(
        "--if-needed", help="Do nothing (exit 0) when the node is already initialized: for container "
        "entrypoints.")] = False,
) -> None:
    """Create a node home: config, Ed25519 key (0600), database, data dir and the first operator."""

    def body() -> None:
        settings = Settings.load(home=home)
        if if_needed and is_initialized(settings):
            console.print(f"node home     {settings.home} (already initialized)")
            return
        result = init_home(settings)
        console.print(f"node home     {settings.home}")
        console.print(f"node key      ed25519:{result.public_key}")
        console.print(f"ledger key    {result.ledger_key}   [dim](verifier key of the signed tree heads)[/]")
        console.print(f"operator      {result.operator_id}")
        console.print(f"token         {result.operator_token}   [dim](shown once: store it now)[/]")

    _run(body)


@app.command()
def serve(
    home: Home = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (0 = any free).")] = None,
    flight_port: Annotated[int | None, typer.Option(help="Flight port (0 = any free).")] = None,
) -> None:
    """Serve the HTTP control plane and the Flight data plane until interrupted."""

    def body() -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        stop = threading.Event()

        def on_signals() -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())

        on_signals()  # a stop during start-up is a clean stop too
        with _node(home, http_port=http_port, flight_port=flight_port) as node:
            node.start_flight()  # before HTTP: a node whose /healthz answers serves Flight too
            node.start_http()
            node.start_chain()
            node.start_federation()
            on_signals()  # again: the Flight server installs its own handlers, which would swallow SIGTERM
            console.print(f"HTTP   {node.public_http_url}  (OpenAPI at /docs)")
            console.print(f"Flight {node.public_flight_url}")
            stop.wait()
            console.print("stopping")

    _run(body)


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option("--home", help="Keep the demo's node home here (must not exist).")]
    = None,
    rows: Annotated[int, typer.Option(min=100, help="Sample rows to generate.")] = 20_000,
) -> None:
    """Run the whole flow on generated sample data and print a summary."""
    from node.demo import run_demo

    def body() -> None:
        run_demo(home, rows, console)

    _run(body)


@participant_app.command("create")
def participant_create(
    name: str, role: Annotated[str, typer.Option(help="operator | provider | buyer | exchange")],
    token: Token, home: Home = None,
    address: Annotated[str | None, typer.Option(help="EVM address its on-chain payouts go to (0x…).")] = None,
) -> None:
    """Register a participant; prints its token once."""

    def body() -> None:
        with _node(home) as node:
            created = node.service.create_participant(_me(node, token), name, role, address=address)
            console.print_json(json.dumps({"id": created.participant.id, "name": name, "role": role,
                                           "address": created.participant.address, "token": created.token}))

    _run(body)


@participant_app.command("list")
def participant_list(token: Token, home: Home = None) -> None:
    def body() -> None:
        with _node(home) as node:
            table = Table("id", "name", "role")
            for p in node.service.list_participants(_me(node, token)):
                table.add_row(p.id, p.name, p.role)
            console.print(table)

    _run(body)


@dataset_app.command("publish")
def dataset_publish(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Parquet or CSV file.")],
    manifest: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Manifest JSON file.")],
    token: Token, home: Home = None,
) -> None:
    """Publish a file as a dataset (stored as Parquet)."""

    def body() -> None:
        with file.open("rb") as fh:
            fmt: FileFormat = "parquet" if fh.read(4) == b"PAR1" else "csv"
        parsed = Manifest.from_json(json.loads(manifest.read_text(encoding="utf-8")))
        with _node(home) as node, console.status(f"publishing {file.name}"):
            ds = node.service.publish_dataset(_me(node, token), file, fmt, parsed)
        console.print_json(json.dumps(dataset_json(ds), ensure_ascii=False))

    _run(body)


@dataset_app.command("quality")
def dataset_quality(
    dataset: str, token: Token, home: Home = None,
    reassess: Annotated[bool, typer.Option(help="Profile the data again (owner or operator).")] = False,
) -> None:
    """Show a dataset's quality report and grade; ``--reassess`` profiles it again with a progress bar."""

    def body() -> None:
        with _node(home) as node:
            me = _me(node, token)
            if reassess:
                ds = node.service.get_dataset(me, dataset)
                with Progress(TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                              console=err, transient=True) as bar:
                    task = bar.add_task("profile", total=ds.num_rows)
                    report = node.service.reassess(me, dataset, lambda n: bar.update(task, completed=n))
            else:
                report = node.service.quality(me, dataset)
        table = Table("dimension", "metric", "value", "of", title=f"quality of {dataset}: grade "
                      f"{report.get('grade')} (score {report.get('score', 0):.3f})")
        for dim in report.get("dimensions", []):
            for m in dim["metrics"]:
                value = "not assessed: " + (m.get("reason") or "") if m.get("value") is None else f"{m['value']:.3f}"
                table.add_row(dim["name"], m["name"], value, f"{m.get('denominator', '')} {m.get('unit', '')}")
        console.print(table)
        if report.get("gates"):
            console.print("gates: " + ", ".join(report["gates"]))

    _run(body)


@dataset_app.command("shares")
def dataset_shares(dataset: str, token: Token, home: Home = None) -> None:
    """Contribution shares of a dataset (exact fractions) with their inputs and digest."""

    def body() -> None:
        with _node(home) as node:
            ds = node.service.get_dataset(_me(node, token), dataset)
            console.print_json(json.dumps(node.trading.shares(ds)))

    _run(body)


@dataset_app.command("settlements")
def dataset_settlements(dataset: str, token: Token, home: Home = None) -> None:
    """Sales of a dataset and what each contributor was paid (fen; payouts sum to the price)."""

    def body() -> None:
        with _node(home) as node:
            me = _me(node, token)
            ds = node.service.get_dataset(me, dataset)
            if me.role != "operator" and me.id != ds.owner_id:
                raise NotFound("no such dataset", code="dataset_not_found")
            table = Table("settlement", "price (fen)", "payouts (fen)")
            for s in node.trading.settlements(ds):
                table.add_row(s["id"], f"{s['price_fen']:,}", ", ".join(f"{k} {v:,}" for k, v in s["payouts"].items()))
            console.print(table)

    _run(body)


@quote_app.command("request")
def quote_request(
    dataset: str, token: Token, home: Home = None,
    mode: Annotated[str, typer.Option(help="rows | aggregate | model")] = "rows",
    days: Annotated[int, typer.Option(min=1, help="Licence term in days.")] = 30,
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns (default: all).")] = None,
    rows: Annotated[int | None, typer.Option(min=1, help="First N rows only (default: all).")] = None,
    epsilon: Annotated[str | None, typer.Option(help="ε budget (aggregate and model modes).")] = None,
    out: Annotated[Path | None, typer.Option(help="Save the signed quote here (for `quote accept`).")] = None,
) -> None:
    """Ask for a signed quote; prints every price component."""

    def body() -> None:
        request = QuoteRequest.from_json({"mode": mode, "days": days, **({"columns": columns.split(",")}
                                          if columns else {}), **({"rows": rows} if rows else {}),
                                          **({"epsilon": epsilon} if epsilon else {})})
        with _node(home) as node:
            me = _me(node, token)
            signed = node.trading.quote(me, node.service.get_dataset(me, dataset), request)
        _emit_json(signed, out)

    _run(body)


@quote_app.command("accept")
def quote_accept(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The signed quote JSON.")],
    token: Token, home: Home = None,
) -> None:
    """Accept a signed quote: creates the licence (or returns the one already created) and settles the sale."""

    def body() -> None:
        signed = json.loads(file.read_text(encoding="utf-8"))
        with _node(home) as node:
            me = _me(node, token)
            lic, _ = node.trading.accept(me, str(signed.get("quote", {}).get("id", "")), signed)
            console.print_json(json.dumps(license_json(lic, node.service.receipt(me, lic.id))))

    _run(body)


@dataset_app.command("list")
def dataset_list(token: Token, home: Home = None) -> None:
    def body() -> None:
        with _node(home) as node:
            table = Table("id", "name", "title", "rows", "owner")
            for ds in node.service.list_datasets(_me(node, token), limit=1000):
                table.add_row(ds.id, ds.name, ds.title, f"{ds.num_rows:,}", ds.owner_id)
            console.print(table)

    _run(body)


@license_app.command("grant")
def license_grant(
    dataset: str, buyer: str, token: Token, home: Home = None,
    mode: Annotated[str, typer.Option(help="rows | aggregate | model")] = "rows",
    columns: Annotated[str | None, typer.Option(help="Comma-separated columns (default: all).")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Expires after this many days.")] = None,
    purpose: Annotated[str, typer.Option(help="Declared purpose, kept in the terms.")] = "",
) -> None:
    """Grant a licence on one of your datasets."""

    def body() -> None:
        now = datetime.now(UTC)
        request = LicenseRequest.from_json({
            "dataset": dataset, "buyer": buyer, "mode": mode,
            "columns": columns.split(",") if columns else None,
            "expires_at": (now + timedelta(days=days)).isoformat() if days else None,
            "terms": {"purpose": purpose} if purpose else {},
        }, now)
        with _node(home) as node:
            lic = node.service.grant_license(_me(node, token), request)
        console.print_json(json.dumps(license_json(lic)))

    _run(body)


@license_app.command("revoke")
def license_revoke(
    license_id: str, token: Token, home: Home = None,
    reason: Annotated[str, typer.Option(help="Recorded with the revocation.")] = "",
) -> None:
    """Revoke a licence; streams under it stop at their next batch."""

    def body() -> None:
        with _node(home) as node:
            lic = node.service.revoke_license(_me(node, token), license_id, reason)
        console.print_json(json.dumps(license_json(lic)))

    _run(body)


@license_app.command("list")
def license_list(token: Token, home: Home = None, dataset: str | None = None) -> None:
    def body() -> None:
        with _node(home) as node:
            table = Table("id", "dataset", "buyer", "mode", "expires", "revoked")
            for lic in node.service.list_licenses(_me(node, token), dataset):
                table.add_row(lic.id, lic.dataset_id, lic.buyer_id, lic.mode,
                              lic.expires_at.isoformat() if lic.expires_at else "-",
                              lic.revoked_at.isoformat() if lic.revoked_at else "-")
            console.print(table)

    _run(body)


def _verifier(key: str | None) -> NoteVerifier | None:
    return NoteVerifier.from_key(key) if key else None


VerifierKey = Annotated[str | None, typer.Option(
    "--key", help="Verifier key that signed heads must carry (as printed by `dsnode init`); default: the key "
    "in the node home.")]


@ledger_app.command("verify")
def ledger_verify(
    home: Home = None,
    trusted: Annotated[list[Path] | None, typer.Option(
        "--trusted-head", exists=True, dir_okay=False,
        help="A signed head saved earlier (`dsnode ledger head --out`); the log must still contain it.")] = None,
    key: VerifierKey = None,
    chain: Annotated[bool, typer.Option(
        "--chain", help="Also check every root anchored on chain against the log (consistency proofs), the "
        "node's anchor records and the licences mirrored to the LicenseRegistry.")] = False,
) -> None:
    """Recompute the hash chain, the Merkle tree and every signed head. Exit 0 when intact; exit 3 naming the
    first bad entry otherwise."""

    def body() -> None:
        notes = [path.read_text(encoding="utf-8") for path in trusted or []]
        with _node(home) as node:
            link = node.chain if chain else None
            if chain and link is None:
                raise ValueError("this node's chain is off (chain = \"off\"); --chain has nothing to check")
            anchors = link.anchors() if link is not None else []
            total = node.ledger.size()
            with Progress(TextColumn("verifying ledger"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=err, transient=True) as bar:
                task = bar.add_task("verify", total=total)
                try:
                    report = node.ledger.audit(notes, lambda n: bar.update(task, completed=n), _verifier(key),
                                               anchored={a.size: a.root for a in anchors})
                    checked = link.check(report, anchors) if link is not None else None
                except LedgerTampered as exc:
                    bar.stop()
                    err.print(f"[red bold]ledger TAMPERED[/] {escape(str(exc))}")
                    raise typer.Exit(TAMPERED_EXIT) from None
            head = node.ledger.checkpoint()
        console.print(f"[green]ledger intact[/]: {report.size:,} entries, root {report.root.hex()}, "
                      f"{report.checkpoints} signed heads and {report.trusted} trusted heads verified")
        if checked is not None:
            latest = checked.latest
            console.print(
                f"[green]chain consistent[/]: {checked.anchors} anchors on chain {checked.chain_id} "
                f"(LedgerAnchor {checked.contract}) are roots of this log"
                + (f", the latest for {latest.size:,} entries in block {latest.block} (tx {latest.tx_hash})"
                   if latest else " (none yet: run `dsnode ledger anchor`)")
                + f"; {checked.records} anchor records and {checked.licences} mirrored licences match the chain")
        console.print(escape(head.note), end="")

    _run(body)


@ledger_app.command("anchor")
def ledger_anchor(home: Home = None) -> None:
    """Mirror pending licences and settlements to the chain, then anchor the current signed tree head
    (deploying the node's contracts on first use)."""

    def body() -> None:
        with _node(home) as node:
            link = node.chain
            if link is None:
                raise ValueError("this node's chain is off (chain = \"off\"); set chain in config.toml")
            with console.status("mirroring licences and settlements"):
                mirrored = 0
                while (n := link.mirror()) > 0:
                    mirrored += n
            with console.status("anchoring the signed tree head"):
                done = link.anchor()
            status = link.status()
        if mirrored:
            console.print(f"mirrored {mirrored} ledger entries (licences, revocations, settlements)")
        if done is None:
            latest = status["latest_anchor"]
            console.print(f"already anchored: the chain holds the root of {latest['size']:,} entries, which "
                          "covers every entry but anchor records")
        else:
            console.print(f"[green]anchored[/] {done.size:,} entries, root {done.root.hex()}, in tx {done.tx_hash} "
                          f"(block {done.block}, {done.gas_used:,} gas, {done.seconds * 1000:.0f} ms); recorded as "
                          f"ledger entry {done.entry.seq}")

    _run(body)


@chain_app.command("status")
def chain_status(home: Home = None) -> None:
    """Where this node anchors: chain, account, contract addresses, latest anchor, mirroring progress."""

    def body() -> None:
        with _node(home) as node:
            if node.chain is None:
                raise ValueError("this node's chain is off (chain = \"off\")")
            console.print_json(json.dumps(node.chain.status()))

    _run(body)


@ledger_app.command("head")
def ledger_head(
    home: Home = None,
    out: Annotated[Path | None, typer.Option(help="Also save the signed head here, for a later "
                                                  "`ledger verify --trusted-head`.")] = None,
) -> None:
    """Print the current signed tree head (a C2SP checkpoint note) and the key that verifies it."""

    def body() -> None:
        with _node(home) as node:
            head = node.ledger.checkpoint()
            vkey = node.ledger.verifier.to_key()
        if out is not None:
            out.write_text(head.note, encoding="utf-8")
        console.print(escape(head.note), end="")
        console.print(f"verifier key: {vkey}", style="dim")

    _run(body)


@ledger_app.command("proof")
def ledger_proof(
    seq: Annotated[int, typer.Argument(min=0, help="Entry number.")], home: Home = None,
    out: Annotated[Path | None, typer.Option(help="Write the receipt JSON here.")] = None,
) -> None:
    """Print a receipt for entry SEQ: the entry, its inclusion proof and the signed head. Anyone can check it
    with `dsnode ledger check-receipt FILE --key <verifier key>`, without access to the node."""

    def body() -> None:
        with _node(home) as node:
            if seq >= node.ledger.size():
                raise NotFound("no such ledger entry", code="entry_not_found")
            receipt = node.ledger.receipt(seq).to_json() | {"verifier_key": node.ledger.verifier.to_key()}
        _emit_json(receipt, out)

    _run(body)


@ledger_app.command("check-receipt")
def ledger_check_receipt(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Receipt JSON.")],
    key: Annotated[str, typer.Option("--key", help="The node's ledger verifier key, obtained out of band.")],
) -> None:
    """Check a receipt offline: the head's signature and the entry's inclusion under it. Exit 0 or 3."""

    def body() -> None:
        try:
            receipt = Receipt.from_json(json.loads(file.read_text(encoding="utf-8")))
            head = verify_receipt(receipt, NoteVerifier.from_key(key))
        except (ReceiptError, NoteError, ValueError) as exc:
            err.print(f"[red bold]receipt INVALID[/] {escape(str(exc))}")
            raise typer.Exit(TAMPERED_EXIT) from None
        e = receipt.entry
        console.print(f"[green]receipt valid[/]: entry {e.seq} ({e.kind} {e.subject}) is in {head.origin} "
                      f"at size {head.size}")

    _run(body)



# ---- the data space --------------------------------------------------------------------------------------------
@peer_app.command("add")
def peer_add(
    url: Annotated[str, typer.Argument(help="The peer's HTTP base URL (it must be serving).")],
    token: Token, home: Home = None,
    key: Annotated[str | None, typer.Option(help="Its Ed25519 public key (hex) to pin; default: what it "
                                                 "announces at /v1/node.")] = None,
    follow: Annotated[bool, typer.Option(help="Pull its catalog into this node's listings.")] = True,
) -> None:
    """Pin a peer node (operators)."""

    def body() -> None:
        with _node(home) as node:
            peer = node.federation.add_peer(_me(node, token), url, key, follow)
        console.print(f"peer [bold]{peer.name}[/] {peer.http_url} (Flight {peer.flight_url}) key {peer.public_key}")

    _run(body)


@peer_app.command("list")
def peer_list(token: Token, home: Home = None) -> None:
    def body() -> None:
        with _node(home) as node:
            from node.authz import Resource

            node.authz.authorize(_me(node, token).id, "peer.manage", Resource.node())
            table = Table("name", "http", "flight", "follow", "cursor", "synced")
            for p in node.federation.peers():
                table.add_row(p.name, p.http_url, p.flight_url, "yes" if p.follow else "no", str(p.cursor),
                              p.synced_at.isoformat() if p.synced_at else "-")
            console.print(table)

    _run(body)


@peer_app.command("sync")
def peer_sync(token: Token, home: Home = None) -> None:
    """Pull the followed peers' catalogs now."""

    def body() -> None:
        with _node(home) as node:
            from node.authz import Resource

            node.authz.authorize(_me(node, token).id, "peer.manage", Resource.node())
            taken = node.federation.sync()
        console.print_json(json.dumps(taken))

    _run(body)


@partition_app.command("host")
def partition_host(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Parquet or CSV file.")],
    owner: Annotated[str, typer.Option(help="The peer node that owns the dataset.")],
    dataset: Annotated[str, typer.Option(help="The dataset's id on its owner.")],
    token: Token, home: Home = None,
    out: Annotated[Path | None, typer.Option(help="Save the signed statement here for the owner.")] = None,
) -> None:
    """Store part of a peer's dataset on this node; prints the statement its owner attaches."""

    def body() -> None:
        with file.open("rb") as fh:
            fmt: FileFormat = "parquet" if fh.read(4) == b"PAR1" else "csv"
        with _node(home) as node, console.status(f"storing {file.name}"):
            statement = node.federation.host_partition(_me(node, token), file, fmt, owner, dataset)
        _emit_json(statement, out)

    _run(body)


@partition_app.command("attach")
def partition_attach(
    dataset: str,
    statement: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The host's signed statement.")],
    token: Token, home: Home = None,
) -> None:
    """Attach a partition a peer hosts to one of your datasets."""

    def body() -> None:
        signed = json.loads(statement.read_text(encoding="utf-8"))
        with _node(home) as node:
            part = node.federation.attach_partition(_me(node, token), dataset, signed)
        console.print(f"attached partition {part.id}: {part.num_rows:,} rows on {part.peer}")

    _run(body)


SpaceDir = Annotated[Path, typer.Option("--dir", help="The space's directory (homes, journal, space.json).")]


@space_app.command("up")
def space_up_command(
    directory: SpaceDir,
    nodes: Annotated[int, typer.Option(min=1, max=16, help="How many nodes.")] = 3,
    postgres: Annotated[str | None, typer.Option(
        help="libpq URL that may create databases (e.g. postgresql://postgres@127.0.0.1:5432/postgres): node 2 "
        "then runs on PostgreSQL.")] = None,
) -> None:
    """Start N nodes on loopback (own homes and ports, one shared embedded chain), each pinning the others."""
    from node.space import space_up

    def body() -> None:
        with console.status(f"starting {nodes} nodes"):
            members = space_up(directory, nodes, postgres)
        table = Table("node", "HTTP", "Flight", "database", "pid", title=f"data space in {directory}")
        for m in members:
            table.add_row(m.name, m.http_url, m.flight_url, "postgresql" if m.database_url else "sqlite",
                          str(m.pid))
        console.print(table)
        console.print(f"operator tokens and homes: {directory / 'space.json'}; stop with: dsnode space down "
                      f"--dir {directory}")

    _run(body)


@space_app.command("down")
def space_down_command(directory: SpaceDir) -> None:
    """Stop every node of the space (SIGTERM, SIGKILL after 20 s); `space up` starts them again."""
    from node.space import space_down

    def body() -> None:
        stopped, killed = space_down(directory)
        console.print(f"stopped {stopped} node(s)" + (f", {killed} killed after not stopping within 20 s" if killed
                                                      else ", all cleanly"))

    _run(body)


@space_app.command("status")
def space_status_command(directory: SpaceDir) -> None:
    from node.space import space_status

    def body() -> None:
        table = Table("node", "HTTP", "Flight", "database", "pid", "running", "healthy")
        for n in space_status(directory):
            table.add_row(n["name"], n["http_url"], n["flight_url"], n["database"], str(n["pid"]),
                          str(n["running"]), str(n["healthy"]))
        console.print(table)

    _run(body)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
