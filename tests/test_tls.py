"""TLS on both planes from certificate files: HTTPS and Flight ``grpc+tls``, node-to-node calls verified against a
configured CA. A plaintext client, or a client that does not trust the CA, gets nothing."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.flight as fl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.runtime import Node, init_home
from node.settings import Settings


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsnode test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _trust(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _tls_node(home: Path, cert: Path, key: Path, name: str, **extra: object) -> tuple[Node, str]:
    settings = Settings.load(home=home, http_port=0, flight_port=0, tls_cert_file=cert, tls_key_file=key,
                             node_name=name, **extra)
    token = init_home(settings).operator_token
    node = Node.open(settings)
    node.start_flight()
    node.start_http()
    return node, token


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[Node, str, Path]]:
    cert, key = _self_signed(tmp_path)
    node, token = _tls_node(tmp_path / "home", cert, key, "secure")
    try:
        yield node, token, cert
    finally:
        node.close()


def test_http_is_served_over_tls_only(tls: tuple[Node, str, Path]) -> None:
    node, _, cert = tls
    url = node.public_http_url
    assert url.startswith("https://127.0.0.1:")
    assert httpx.get(f"{url}/healthz", verify=_trust(cert)).status_code == 200
    info = httpx.get(f"{url}/v1/node", verify=_trust(cert)).json()
    assert info["flight_url"].startswith("grpc+tls://") and info["http_url"] == url
    with pytest.raises(httpx.ConnectError):  # the system store does not trust a private CA
        httpx.get(f"{url}/healthz")
    with pytest.raises(httpx.HTTPError):  # plaintext HTTP on the TLS port
        httpx.get(url.replace("https://", "http://") + "/healthz")


def test_flight_is_served_over_grpc_tls(tls: tuple[Node, str, Path]) -> None:
    node, token, cert = tls
    options = fl.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
    with fl.connect(node.public_flight_url, tls_root_certs=cert.read_bytes()) as client:
        assert list(client.list_flights(options=options)) == []
    plain = node.public_flight_url.replace("grpc+tls://", "grpc://")
    with fl.connect(plain) as client, pytest.raises(fl.FlightError):
        list(client.list_flights(options=options))
    with fl.connect(node.public_flight_url) as client, pytest.raises(fl.FlightError):  # CA not trusted
        list(client.list_flights(options=options))


def test_peers_call_each_other_over_tls_with_the_configured_ca(tls: tuple[Node, str, Path], tmp_path: Path) -> None:
    node, _, cert = tls
    key = cert.with_name("key.pem")
    trusting, trusting_token = _tls_node(tmp_path / "trusting", cert, key, "trusting", tls_ca_file=cert)
    naive, naive_token = _tls_node(tmp_path / "naive", cert, key, "naive")
    try:
        ok = httpx.post(f"{trusting.public_http_url}/v1/peers", verify=_trust(cert),
                        headers={"authorization": f"Bearer {trusting_token}"},
                        json={"http_url": node.public_http_url})
        assert ok.status_code == 201, ok.text
        refused = httpx.post(f"{naive.public_http_url}/v1/peers", verify=_trust(cert),
                             headers={"authorization": f"Bearer {naive_token}"},
                             json={"http_url": node.public_http_url})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "peer_unreachable"
    finally:
        trusting.close()
        naive.close()
