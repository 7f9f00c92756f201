"""Allow/deny tables against the real Casbin enforcer, and the licence state combined with it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import select

from node.authz import Resource
from node.manifest import LicenseRequest
from node.models import CasbinRule, License
from node.runtime import Node
from node.settings import Settings
from tests.conftest import Clock, Harness, Party, start_node

TABLE = pa.table({"city": ["北京", "上海"], "age": [30, 41]})


@dataclass
class World:
    h: Harness
    clock: Clock
    provider: Party
    other_provider: Party
    buyer: Party
    stranger: Party
    exchange: Party
    listed: str
    unlisted: str
    lic: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    clock = Clock()
    h = start_node(tmp_path_factory.mktemp("authz") / "home", clock=clock)
    provider, other = h.party("prov", "provider"), h.party("prov2", "provider")
    buyer, stranger, exchange = h.party("buyer", "buyer"), h.party("stranger", "buyer"), h.party("ex", "exchange")
    listed = h.publish(provider, TABLE, "listed")["id"]
    unlisted = h.publish(provider, TABLE, "unlisted", listed=False)["id"]
    lic = h.grant(provider, unlisted, buyer)["id"]
    try:
        yield World(h, clock, provider, other, buyer, stranger, exchange, listed, unlisted, lic)
    finally:
        h.close()


WHO = ("operator", "provider", "other_provider", "buyer", "stranger", "exchange")
# action, resource (by name in World, or "node"), then who is allowed.
TABLE_ROWS: list[tuple[str, str, set[str]]] = [
    ("participant.create", "node", {"operator"}),
    ("participant.read", "node", {"operator"}),
    ("dataset.publish", "node", {"provider", "other_provider"}),
    ("dataset.read", "listed", set(WHO)),
    ("dataset.read", "unlisted", {"operator", "provider", "buyer"}),
    ("license.grant", "listed", {"provider"}),
    ("license.grant", "unlisted", {"provider"}),
    ("license.read", "lic", {"operator", "provider", "buyer"}),
    ("license.revoke", "lic", {"operator", "provider"}),
    ("dataset.query", "lic", {"buyer"}),
]


def _subject(w: World, who: str) -> str:
    return w.h.operator.id if who == "operator" else getattr(w, who).id


def _resource(w: World, name: str) -> Resource:
    if name == "node":
        return Resource.node()
    if name == "lic":
        return Resource.license(w.lic)
    return Resource.dataset(getattr(w, name))


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("action", "resource", "allowed"), TABLE_ROWS,
                         ids=[f"{a}@{r}" for a, r, _ in TABLE_ROWS])
def test_allow_deny_table(world: World, who: str, action: str, resource: str, allowed: set[str]) -> None:
    assert world.h.node.authz.allowed(_subject(world, who), action, _resource(world, resource)) is (who in allowed)


def test_unknown_subjects_actions_and_resources_are_denied(world: World) -> None:
    authz = world.h.node.authz
    assert not authz.allowed("p_nobody", "dataset.read", Resource.dataset(world.listed))
    assert not authz.allowed(world.buyer.id, "dataset.delete", Resource.dataset(world.listed))
    assert not authz.allowed(world.buyer.id, "dataset.query", Resource.license("lic_unknown"))
    assert not authz.allowed(world.h.operator.id, "dataset.query", Resource.license(world.lic))  # no licence, no bytes


def test_expiry_is_checked_at_the_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    h = start_node(tmp_path / "home", clock=clock)
    try:
        prov, buyer, other = h.party("p", "provider"), h.party("b", "buyer"), h.party("o", "buyer")
        ds = h.publish(prov, TABLE, "t")["id"]
        lic = h.grant(prov, ds, buyer, expires_at=(clock.now + timedelta(days=1)).isoformat())["id"]
        authz = h.node.authz
        authz.authorize(buyer.id, "dataset.query", Resource.license(lic))
        clock.advance(days=1)
        with pytest.raises(Exception) as caught:
            authz.authorize(buyer.id, "dataset.query", Resource.license(lic))
        assert getattr(caught.value, "code", None) == "license_expired"
        with pytest.raises(Exception) as other_caught:
            authz.authorize(other.id, "dataset.query", Resource.license(lic))
        assert getattr(other_caught.value, "code", None) == "permission_denied"  # no status leak to others
    finally:
        h.close()


def test_revocation_and_a_second_licence_on_the_same_dataset(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    prov, buyer = h.party("p", "provider"), h.party("b", "buyer")
    ds = h.publish(prov, TABLE, "t", listed=False)["id"]
    first, second = h.grant(prov, ds, buyer)["id"], h.grant(prov, ds, buyer)["id"]
    authz = h.node.authz
    assert h.http.post(f"/v1/licenses/{first}/revoke", headers=prov.headers).status_code == 200
    with pytest.raises(Exception) as caught:
        authz.authorize(buyer.id, "dataset.query", Resource.license(first))
    assert getattr(caught.value, "code", None) == "license_revoked"
    assert authz.allowed(buyer.id, "dataset.query", Resource.license(second))
    assert authz.allowed(buyer.id, "dataset.read", Resource.dataset(ds))  # still a licensee via the second
    assert h.http.post(f"/v1/licenses/{second}/revoke", headers=prov.headers).status_code == 200
    assert not authz.allowed(buyer.id, "dataset.read", Resource.dataset(ds))


def test_restart_rebuilds_the_same_decisions(world: World) -> None:
    authz = world.h.node.authz
    before = {(who, a, r): authz.allowed(_subject(world, who), a, _resource(world, r))
              for who in WHO for a, r, _ in TABLE_ROWS}
    authz.load()
    after = {(who, a, r): authz.allowed(_subject(world, who), a, _resource(world, r))
             for who in WHO for a, r, _ in TABLE_ROWS}
    assert before == after


def test_changes_from_another_process_are_seen_by_the_data_plane_check(sqlite_harness: Harness) -> None:
    h = sqlite_harness
    prov, buyer = h.party("p", "provider"), h.party("b", "buyer")
    ds = h.publish(prov, TABLE, "t")["id"]
    other = Node.open(Settings.load(home=h.home))  # a second node process on the same home (e.g. the CLI)
    try:
        actor = other.service.authenticate(prov.token)
        lic = other.service.grant_license(actor, LicenseRequest(dataset=ds, buyer=buyer.id)).id
        assert not h.node.authz.allowed(buyer.id, "dataset.query", Resource.license(lic))  # not loaded yet
        h.node.authz.refresh_license(lic)
        assert h.node.authz.allowed(buyer.id, "dataset.query", Resource.license(lic))
        other.service.revoke_license(actor, lic)
        assert h.node.authz.allowed(buyer.id, "dataset.query", Resource.license(lic))  # stale until refreshed
        h.node.authz.refresh_license(lic)
        assert not h.node.authz.allowed(buyer.id, "dataset.query", Resource.license(lic))
    finally:
        other.close()


def test_a_rolled_back_grant_leaves_no_rule_and_no_link(sqlite_harness: Harness) -> None:
    """Attack on the atomicity: a grant whose transaction fails must not authorize anything."""
    h = sqlite_harness
    prov, buyer = h.party("p", "provider"), h.party("b", "buyer")
    ds = h.publish(prov, TABLE, "t")["id"]
    node = h.node
    lic = License(id="lic_rolledback", dataset_id=ds, buyer_id=buyer.id, granted_by=prov.id, mode="rows",
                  columns=None, terms={}, created_at=node.clock())
    with pytest.raises(RuntimeError), node.db.transaction() as session:
        session.add(lic)
        session.flush()
        node.authz.license_granted(session, lic, prov.id)
        raise RuntimeError("crash before commit")
    assert not node.authz.allowed(buyer.id, "dataset.query", Resource.license("lic_rolledback"))
    with node.db.reader() as session:
        assert session.get(License, "lic_rolledback") is None
        rows = session.scalars(select(CasbinRule).where(CasbinRule.v2 == "license:lic_rolledback")).all()
        assert rows == []
    node.authz.load()
    assert not node.authz.allowed(buyer.id, "dataset.query", Resource.license("lic_rolledback"))
