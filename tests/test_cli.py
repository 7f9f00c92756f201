"""The ``dsnode`` CLI as a user runs it: a real subprocess on a real home."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from node.keys import load_key
from node.settings import Settings
from privacy.pii import scan


def dsnode(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _token(output: str) -> str:
    match = re.search(r"token\s+(dsn_\S+)", output)
    assert match, output
    return match.group(1)


def test_init_creates_a_home_with_a_private_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = dsnode("init", "--home", str(home)).stdout
    assert (home / "config.toml").is_file()
    assert (home / "dsnode.db").is_file()
    assert (home / "data" / "datasets").is_dir()
    key = home / "node_key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    load_key(key)
    assert _token(out).startswith("dsn_")
    again = dsnode("init", "--home", str(home), check=False)
    assert again.returncode == 1 and "already a node home" in again.stderr


def test_a_world_readable_key_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dsnode("init", "--home", str(home))
    os.chmod(home / "node_key.pem", 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_key(home / "node_key.pem")


def _home_with_parties(home: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """``dsnode init`` a home and register a provider and a buyer through the CLI."""
    op = _token(dsnode("init", "--home", str(home)).stdout)
    env = {"DSNODE_HOME": str(home)}
    prov = json.loads(dsnode("participant", "create", "acme", "--role", "provider", "--token", op, env=env).stdout)
    buyer = json.loads(dsnode("participant", "create", "lab", "--role", "buyer", "--token", op, env=env).stdout)
    return env, prov, buyer


def test_resource_commands_round_trip(tmp_path: Path) -> None:
    env, prov, buyer = _home_with_parties(tmp_path / "home")
    csv = tmp_path / "t.csv"
    csv.write_text("city,age\n北京,30\n上海,41\n", encoding="utf-8")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"name": "cities", "title": "Cities"}), encoding="utf-8")
    ds = json.loads(dsnode("dataset", "publish", str(csv), "--manifest", str(manifest), "--token", prov["token"],
                           env=env).stdout)
    assert ds["num_rows"] == 2 and [f["name"] for f in ds["schema"]] == ["city", "age"]
    lic = json.loads(dsnode("license", "grant", ds["id"], buyer["id"], "--columns", "city", "--days", "7",
                            "--token", prov["token"], env=env).stdout)
    assert lic["columns"] == ["city"] and lic["expires_at"]
    listed = dsnode("license", "list", "--token", buyer["token"], env=env).stdout
    assert lic["id"] in listed
    denied = dsnode("license", "revoke", lic["id"], "--token", buyer["token"], env=env, check=False)
    assert denied.returncode == 2 and "[permission_denied]" in denied.stderr  # the holder may read, not revoke
    revoked = json.loads(dsnode("license", "revoke", lic["id"], "--token", prov["token"], env=env).stdout)
    assert revoked["revoked_at"]
    forged = dsnode("dataset", "list", "--token", "dsn_forged", env=env, check=False)
    assert forged.returncode == 2 and "unauthenticated" in forged.stderr


def test_commands_on_a_missing_home_say_what_to_do(tmp_path: Path) -> None:
    proc = dsnode("dataset", "list", "--token", "x", "--home", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 1 and "dsnode init" in proc.stderr


def test_demo_runs_end_to_end_and_keeps_its_home(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    done = dsnode("demo", "--home", str(home), "--rows", "2000")
    out = done.stdout
    assert "demo complete" in out and "residual PII scan of the output: NOTHING found" in out
    for code in ("permission_denied", "unauthenticated", "column_withheld", "invalid_filter", "budget_exhausted",
                 "invalid_epsilon", "license_revoked"):
        assert code in out
    assert "ALLOWED" not in out
    assert (home / "dsnode.db").is_file()
    # Nothing the demo prints is a clear direct identifier: every digit run that could be one is scanned.
    candidates = re.findall(r"(?<![0-9A-Za-z])\d{11,19}X?(?![0-9A-Za-z])", out + done.stderr)
    assert not scan(pa.table({"printed": pa.array(candidates or ["none"], pa.string())}))
    assert not re.search(r"[王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗][\u4e00-\u9fff]{1,2}(?![\u4e00-\u9fff])",
                         "".join(line for line in out.splitlines() if "│" in line and "*" in line))


def test_settings_precedence_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[node]\nhttp_port = 1111\nflight_port = 2222\nbatch_rows = 5\n")
    monkeypatch.setenv("DSNODE_FLIGHT_PORT", "3333")
    settings = Settings.load(home=home, batch_rows=7)
    assert (settings.http_port, settings.flight_port, settings.batch_rows) == (1111, 3333, 7)
    monkeypatch.setenv("DSNODE_HOME", str(home))
    assert Settings.load().http_port == 1111


def test_prod_refuses_placeholder_secrets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DSNODE_TOKEN_PEPPER"):
        Settings.load(home=tmp_path, environment="prod")
    for weak in ("", "short"):  # an empty or short pepper is no secret either
        with pytest.raises(ValueError, match="DSNODE_TOKEN_PEPPER"):
            Settings.load(home=tmp_path, environment="prod", token_pepper=weak)
    assert Settings.load(home=tmp_path, environment="prod", token_pepper="s" * 32).environment == "prod"


def test_ledger_commands_verify_prove_and_name_tampering(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    dsnode("demo", "--home", str(home), "--rows", "500")
    env = {"DSNODE_HOME": str(home)}
    head_file, receipt_file = tmp_path / "head.txt", tmp_path / "receipt.json"
    head = dsnode("ledger", "head", "--out", str(head_file), env=env).stdout
    key = re.search(r"verifier key: (\S+)", head)
    assert key and head_file.read_text().startswith("dsnode.local/")
    with sqlite3.connect(home / "dsnode.db") as db:
        size = db.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]
        granted = db.execute("SELECT min(seq) FROM ledger_entries WHERE kind = 'license.granted'").fetchone()[0]
        access = db.execute("SELECT min(seq) FROM ledger_entries WHERE kind = 'access'").fetchone()[0]
    ok = dsnode("ledger", "verify", "--trusted-head", str(head_file), "--key", key.group(1), env=env).stdout
    assert f"ledger intact: {size} entries" in ok and "1 trusted heads verified" in ok

    dsnode("ledger", "proof", str(granted), "--out", str(receipt_file), env=env)
    checked = dsnode("ledger", "check-receipt", str(receipt_file), "--key", key.group(1)).stdout  # no home needed
    assert f"receipt valid: entry {granted} (license.granted" in checked
    forged = json.loads(receipt_file.read_text())
    forged["entry"]["payload"]["mode"] = "model"
    receipt_file.write_text(json.dumps(forged))
    bad = dsnode("ledger", "check-receipt", str(receipt_file), "--key", key.group(1), check=False)
    assert bad.returncode == 3 and "receipt INVALID" in bad.stderr

    with sqlite3.connect(home / "dsnode.db") as db:
        body = db.execute("SELECT body FROM ledger_entries WHERE seq = ?", (access,)).fetchone()[0]
        db.execute("UPDATE ledger_entries SET body = ? WHERE seq = ?", (body.replace(b'"rows":', b'"rowz":'), access))
    tampered = dsnode("ledger", "verify", env=env, check=False)
    assert tampered.returncode == 3
    assert "ledger TAMPERED" in tampered.stderr and f"entry {access}:" in tampered.stderr


def test_quote_accept_shares_and_settlements_from_the_cli(tmp_path: Path) -> None:
    env, prov, buyer = _home_with_parties(tmp_path / "home")
    csv = tmp_path / "t.csv"
    csv.write_text("city,amount\n" + "".join(f"{c},{i}\n" for i, c in enumerate(["北京", "上海"] * 50)),
                   encoding="utf-8")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"name": "cities", "title": "Cities", "description": "d", "license_text": "l",
                                    "contact": "c@example.test", "tags": ["t"], "intended_uses": ["tests"],
                                    "limitations": "tiny", "provenance": {
                                        "source": "s", "collection_method": "m", "time_span": "2026",
                                        "processing": "none"},
                                    "privacy": {"policy": {"columns": [
                                        {"column": "city", "role": "attribute", "transform": "keep"},
                                        {"column": "amount", "role": "attribute", "transform": "keep"}]}}}),
                        encoding="utf-8")
    ds = json.loads(dsnode("dataset", "publish", str(csv), "--manifest", str(manifest), "--token", prov["token"],
                           env=env).stdout)
    quality = dsnode("dataset", "quality", ds["id"], "--reassess", "--token", prov["token"], env=env).stdout
    assert f"grade {ds['grade']}" in quality and "not assessed" in quality
    signed = tmp_path / "quote.json"
    dsnode("quote", "request", ds["id"], "--days", "30", "--columns", "city", "--token", buyer["token"],
           "--out", str(signed), env=env)
    lic = json.loads(dsnode("quote", "accept", str(signed), "--token", buyer["token"], env=env).stdout)
    assert lic["columns"] == ["city"] and lic["receipt"]["entry"]["kind"] == "license.granted"
    again = json.loads(dsnode("quote", "accept", str(signed), "--token", buyer["token"], env=env).stdout)
    assert again["id"] == lic["id"]
    shares = json.loads(dsnode("dataset", "shares", ds["id"], "--token", prov["token"], env=env).stdout)
    assert shares["shares"] == {prov["id"]: "1/1"}
    settled = dsnode("dataset", "settlements", ds["id"], "--token", prov["token"], env=env).stdout
    assert f"{prov['id']}" in settled and str(json.loads(signed.read_text())["quote"]["charge"]) in \
        settled.replace(",", "")
