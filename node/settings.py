"""The node's one settings object.

Precedence, highest first: explicit arguments (CLI flags), environment variables prefixed ``DSNODE_``,
the node home's ``config.toml``, defaults. The home itself comes from ``--home`` / ``DSNODE_HOME``.
Build it once in an entry point with :meth:`Settings.load` and pass it down; nothing else reads the environment.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["CONFIG_FILE", "DEFAULT_HOME", "Settings"]

CONFIG_FILE = "config.toml"
DEFAULT_HOME = Path.home() / ".dsnode"


class _HomeConfigFile(PydanticBaseSettingsSource):
    """Reads ``<home>/config.toml``, where home is resolved from the higher-priority sources."""

    def __init__(self, settings_cls: type[BaseSettings], *higher: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._higher = higher

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file at once

    def __call__(self) -> dict[str, Any]:
        home: Any = None
        for source in self._higher:
            home = source().get("home") or home
            if home:
                break
        path = Path(home or DEFAULT_HOME).expanduser() / CONFIG_FILE
        if not path.is_file():
            return {}
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        node = data.get("node", data)
        return {k: v for k, v in node.items() if k in self.settings_cls.model_fields and k != "home"}


class Settings(BaseSettings):
    """Everything configurable about a node. Sizes are bytes, durations seconds, ports TCP ports (0 = any free)."""

    model_config = SettingsConfigDict(env_prefix="DSNODE_", extra="ignore", frozen=True)

    home: Path = Field(default=DEFAULT_HOME, description="Node home: config, key, SQLite database, data dir.")
    environment: Literal["dev", "prod"] = Field(default="dev", description="`prod` refuses placeholder secrets.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite at <home>/dsnode.db. PostgreSQL: "
        "postgresql+psycopg://user@host:5432/db"
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    flight_host: str = "127.0.0.1"
    flight_port: int = Field(default=8815, ge=0, le=65535)
    flight_advertised_uri: str | None = Field(
        default=None, description="Location put in FlightEndpoints; default grpc://flight_host:<bound port>."
    )
    max_upload_bytes: int = Field(default=1 << 30, gt=0, description="Largest accepted dataset upload.")
    batch_rows: int = Field(default=65_536, gt=0, description="Rows per streamed Arrow record batch.")
    max_query_rows: int = Field(default=0, ge=0, description="Hard cap on rows per query; 0 = no cap.")
    token_pepper: SecretStr = Field(
        default=SecretStr("dev-pepper-change-me"),
        description="Secret mixed into API-token hashes (HMAC-SHA256). Must be changed in prod.",
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL", description="SQLite commit durability: NORMAL survives a crash of the node process, "
        "FULL also a crash of the machine (one fsync per commit, ~3,000 commits/s here)."
    )
    ledger_origin: str | None = Field(
        default=None, description="Name of the node's log in signed tree heads (C2SP checkpoint origin and key "
        "name); default dsnode.local/<first 8 bytes of SHA-256 of the node key, hex>."
    )
    chain: Literal["embedded", "rpc", "off"] = Field(
        default="embedded", description="Where the ledger is anchored and licences and payouts mirrored: `embedded`"
        " (an in-process EVM persisted in chain_journal; needs nothing running), `rpc` (chain_rpc_url) or `off`."
    )
    chain_rpc_url: str | None = Field(default=None, description="EVM JSON-RPC endpoint when chain = rpc.")
    chain_key: SecretStr | None = Field(
        default=None, description="Hex secp256k1 private key of the node's chain account; default derived from "
        "the node key (HKDF), so the account is stable for a home. On a real network, fund this account."
    )
    chain_journal: Path | None = Field(
        default=None, description="The embedded chain's journal of signed transactions; default "
        "<home>/chain.jsonl. Nodes that point at one file share one chain."
    )
    anchor_every_entries: int = Field(
        default=1000, ge=0, description="Anchor the signed tree head once this many entries are unanchored; 0 = no."
    )
    anchor_every_seconds: float = Field(
        default=600.0, ge=0, description="Anchor unanchored entries at least this often (seconds); 0 = no."
    )
    chain_mirror_licenses: bool = Field(default=True, description="Register granted licences in LicenseRegistry "
                                        "and revoke them there.")
    chain_pay_settlements: bool = Field(default=True, description="Pay settlements through RevenueSplitter when "
                                        "every payee has an address.")
    chain_wei_per_fen: int = Field(default=10**12, gt=0, description="Wei paid on chain per fen of a settlement.")
    node_name: str = Field(default="dsnode", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$",
                           description="This node's name in a data space (shown in federated listings).")
    public_url: str | None = Field(
        default=None, description="Base URL buyers and peer nodes reach the HTTP plane at; default "
        "http(s)://http_host:<bound port>."
    )
    node_key_file: Path | None = Field(
        default=None, description="The node's Ed25519 key (PKCS#8 PEM, mode 0600 or stricter); default "
        "<home>/node_key.pem. Point it at a mounted secret to bring an existing key."
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate chain: with tls_key_file, HTTP serves HTTPS and Flight "
        "grpc+tls."
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file.")
    tls_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle this node trusts when it calls peer nodes over TLS; default "
        "the system store."
    )
    federation_refresh_seconds: float = Field(
        default=60.0, ge=0, description="How often a serving node pulls the catalogs it follows; 0 = only on "
        "`dsnode peer sync`."
    )
    peer_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one call to a peer node.")
    remote_license_ttl_seconds: float = Field(
        default=1.0, ge=0, description="A partition host re-asks the owning node whether a licence is still "
        "live at most this often while streaming (revocation reaches every endpoint within it)."
    )
    log_level: str = "INFO"

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _HomeConfigFile(settings_cls, init_settings, env_settings))

    @classmethod
    def load(cls, home: Path | str | None = None, **overrides: Any) -> Settings:
        """Build settings; ``None`` overrides are ignored so CLI flags left unset do not mask env or file."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if home is not None:
            given["home"] = Path(home)
        settings = cls(**given)
        settings.check_secrets()
        return settings

    def check_secrets(self) -> None:
        """Refuse to run in prod with the shipped placeholder secrets."""
        pepper = self.token_pepper.get_secret_value()
        if self.environment == "prod" and ("change-me" in pepper or len(pepper) < 16):
            raise ValueError("DSNODE_TOKEN_PEPPER is a placeholder or shorter than 16 characters; set a random "
                             "secret for prod (openssl rand -hex 32)")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'dsnode.db'}"

    @property
    def key_path(self) -> Path:
        return self.node_key_file or self.home / "node_key.pem"

    @property
    def tls(self) -> bool:
        """Whether both planes serve TLS (a certificate and its key are configured)."""
        return self.tls_cert_file is not None and self.tls_key_file is not None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def journal_path(self) -> Path:
        return self.chain_journal or self.home / "chain.jsonl"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE
