"""Architecture rules that code review alone would let slip (STYLE.md §1, §2; DESIGN.md §2)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from node.db import Database
from node.models import Base

ROOT = Path(__file__).resolve().parent.parent
PURE = ("privacy", "pricing", "ledger")
FRAMEWORKS = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "casbin", "web3", "httpx", "node",
              "typer", "rich", "duckdb"}
FRAMEWORKS_FLIGHT = "pyarrow.flight"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", PURE)
def test_pure_cores_import_no_framework(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in FRAMEWORKS, f"{path.relative_to(ROOT)} imports {name}"
            assert not name.startswith(FRAMEWORKS_FLIGHT), f"{path.relative_to(ROOT)} imports {name}"


def test_the_purity_check_catches_a_breach(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from sqlalchemy import select\nimport pyarrow.flight as fl\n")
    found = _imports(bad)
    assert "sqlalchemy" in found and "pyarrow.flight" in found


def _modules() -> list[str]:
    out = []
    for package in ("node", *PURE):
        out.append(package)
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            if ".migrations" not in info.name:
                out.append(info.name)
    return out


@pytest.mark.parametrize("module", _modules())
def test_every_module_declares_an_existing_public_surface(module: str) -> None:
    mod = importlib.import_module(module)
    assert hasattr(mod, "__all__"), f"{module} has no __all__"
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ lists {name!r} which does not exist"


def _schema_diff(url: str) -> list[object]:
    db = Database(url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        db.close()


def test_migrations_match_models_on_sqlite(tmp_path: Path) -> None:
    assert _schema_diff(f"sqlite:///{tmp_path / 'm.db'}") == []


@pytest.mark.postgres
def test_migrations_match_models_on_postgres(pg_database: str) -> None:
    assert _schema_diff(pg_database) == []
