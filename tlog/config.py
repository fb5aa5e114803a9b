"""Settings of the log service.

One :class:`Config` holds every setting. It is built, in increasing order of precedence, from
the defaults below, a TOML or JSON config file (``--config FILE`` / ``TLOG_CONFIG``), environment
variables (``TLOG_<NAME>``, read by every server worker process) and command-line options.

Config file example (TOML)::

    data_dir = "/var/lib/tlog"
    origin = "log.example/twi"
    issuer = "https://log.example"
    public_url = "https://log.example"   # URLs the log publishes (default: issuer), never the Host header
    issuer_keys = [{path = "/etc/tlog/issuers/ci.pem", iss = ["https://ci.example"]}]  # iss required
    trust_anchors = ["/etc/tlog/roots/corp-root.pem"]   # or {path = ..., iss = [...]} (leaf SAN/did:x509)
    allowed_algs = [-7, -35, -8, -19]
    max_statement_size = 65536
    rate_limit = 50.0           # requests per second per client address, 0 = off (default off)
    refusal_rate = 5.0          # refused registrations per second per client (default 5, burst 50)
    lookup_rate = 50.0          # lookups per second per client (default 50, burst 200)
    pending_status = 302        # or 202 (IESG DISCUSS on SCRAPI -10)
    witnesses = [{url = "https://witness.example", vkey = "witness.example+1234abcd+BA..."}]
    witness_quorum = 1          # /checkpoint serves the newest checkpoint with >= 1 cosignature
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from verifier import VerificationError
from verifier.note import ALG_COSIGNATURE_V1, NoteVerifier

# COSE algorithms the log accepts by default (RFC 9053 / RFC 9864 identifiers).
DEFAULT_ALGS = (-7, -35, -36, -37, -38, -39, -8, -19)


# TLOG_* environment variables that are not settings of Config (read elsewhere)
ENV_NOT_SETTINGS = frozenset({"TLOG_CONFIG", "TLOG_SWITCH_INTERVAL"})


class ConfigError(ValueError):
    """A setting is missing or malformed."""


@dataclass
class Config:
    data_dir: str = "./tlog-data"
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = None  # postgresql://... ; SQLite in data_dir when unset
    # PostgreSQL time limits (s): connecting, one statement, waiting for a lock. A request that
    # meets an unreachable or paused database gets 503 + Retry-After within about these.
    db_connect_timeout: float = 5.0
    db_statement_timeout: float = 5.0
    db_lock_timeout: float = 5.0
    # PostgreSQL: seconds the integrator's lease lasts without renewal (tlog.leader); a dead or
    # paused integrator is replaced within about 4/3 of it
    lease_ttl: float = 3.0
    origin: str | None = None  # checkpoint origin; default "<host>:<port>/tlog" -> set at first start
    issuer: str | None = None  # the log's issuer URL (receipts' CWT iss); default http://<host>:<port>
    # the URL clients reach the log at: the transparency configuration's URLs and the path of
    # every Location header come from it, never from the request's Host header; default: issuer
    public_url: str | None = None
    # PEM public keys of trusted issuers / PEM X.509 roots for x5chain statements: each a path or
    # {path, iss = [the issuer identities (CWT iss) it may claim]} (verifier/identity.py)
    issuer_keys: list[Any] = field(default_factory=list)
    trust_anchors: list[Any] = field(default_factory=list)
    allowed_algs: list[int] = field(default_factory=lambda: list(DEFAULT_ALGS))
    allowed_content_types: list[str] = field(default_factory=list)  # empty = any
    max_statement_size: int = 1 << 20  # bytes of a Signed Statement (policy)
    max_body: int = (1 << 20) + 4096  # bytes of a request body (HTTP 413 above)
    max_depth: int = 16  # CBOR nesting limit while decoding untrusted input
    register_wait: float = 2.0  # seconds POST /entries waits for integration before 303
    pending_status: int = 302  # status of GET /entries/<id> while pending (302 or 202)
    retry_after: int = 1  # seconds, on 302/202/303/429/503
    rate_limit: float = 0.0  # requests/s per client address on /entries* (token bucket), 0 = off
    rate_burst: int = 0  # bucket size; 0 = 2 x rate_limit (at least 1)
    # denial-of-service limits, on by default (tlog.server.ratelimit): refused registrations and
    # lookups per client address; valid registrations are never limited by these; 0 = off
    refusal_rate: float = 5.0  # refused registrations/s (then 429 before parsing)
    refusal_burst: int = 50
    lookup_rate: float = 50.0  # GET /entries?... and /twi/v1/cpr per second
    lookup_burst: int = 200
    queue_limit: int = 4096  # entries submitted by this process and not yet integrated
    max_batch: int = 4096  # core group-commit batch limit
    max_wait: float = 0.005  # core group-commit linger (s)
    # "process": group commit and receipts in a separate integrator process per worker
    # (tlog.integrator); "thread": in the worker; "auto": process under `tlog serve` and the
    # server entry points of tlog.server.wsgi, thread elsewhere (tests, embedding)
    integrator: str = "auto"
    lookup_limit: int = 1000  # max entries returned by one lookup (entry ids: ~80 bytes each)
    page_bytes: int = 4 << 20  # max bytes of statements in one /twi/v1/cpr answer (then Link rel=next)
    # witnesses (tlog.witnessing): [{url, vkey}] or "URL=VKEY"; /checkpoint needs witness_quorum cosignatures
    witnesses: list = field(default_factory=list)
    witness_quorum: int = 0  # k of n; 0 = serve the latest checkpoint with whatever cosignatures exist
    witness_interval: float = 1.0  # seconds between collection rounds
    # signing keys in a PKCS#11 token instead of <data_dir>/keys (tlog.hsm): library, token, PIN
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin: str | None = None
    # production HTTP server (serving.httpd: granian): processes, Python threads per process,
    # seconds for a request head and for a request body (then 408 and the connection closes)
    workers: int = 2
    threads: int = 16
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    log_format: str = "plain"  # "plain" (key=value) or "json": every process of the server
    # /health answers 503 "degraded" when registrations wait while the newest checkpoint is older
    # than health_max_checkpoint_age (s; 0 = off), or, with witness_quorum > 0, when the log has
    # had a checkpoint without a quorum of cosignatures for longer than health_max_witness_age
    health_max_checkpoint_age: float = 30.0
    health_max_witness_age: float = 60.0
    # shards by time (tlog.shard): the log closes to registrations at this size (0 = never) or at
    # this ISO 8601 time, pointing registrants at shard_successor (its URL); a new log started
    # with shard_predecessor (the file 'tlog shard close' writes) records that final checkpoint
    # as its entry 0 at its creation
    shard_close_size: int = 0
    shard_close_at: str | None = None
    shard_successor: str | None = None
    shard_predecessor: str | None = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def update(self, values: Mapping[str, Any]) -> "Config":
        """Apply settings (unknown names are an error, values are coerced to the field type)."""
        names = {f.name: f for f in dataclasses.fields(self)}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in names:
                raise ConfigError(f"unknown setting {key!r}")
            if value is None:
                continue
            setattr(self, name, _coerce(name, names[name], value))
            self.__dict__.setdefault("_given", set()).add(name)
        return self

    def given(self, name: str) -> bool:
        """True if the setting was given (file, environment or option), not a default."""
        return name in self.__dict__.get("_given", ())

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> dict[str, Any]:
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read config file {p}: {e}") from None
        try:
            if p.suffix.lower() == ".json":
                data = json.loads(raw)
            else:
                import tomllib

                data = tomllib.loads(raw.decode("utf-8"))
        except Exception as e:  # noqa: BLE001 - any parse failure is a config error
            raise ConfigError(f"cannot parse config file {p}: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a table/object")
        return data

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The ``TLOG_<NAME>`` variables; any other ``TLOG_*`` name is an error (a typo must
        not be ignored), except those in :data:`ENV_NOT_SETTINGS`, ``TLOG_TEST_*`` and ``TLOG_CI_*``."""
        env = os.environ if env is None else env
        names = set(cls.field_names())
        out: dict[str, Any] = {}
        for var, v in env.items():
            if not var.startswith("TLOG_") or var in ENV_NOT_SETTINGS or var.startswith(("TLOG_TEST_", "TLOG_CI_")):
                continue
            name = var[5:].lower()
            if name not in names:
                raise ConfigError(f"unknown setting in the environment: {var}")
            if v != "":
                out[name] = v
        if env.get("TLOG_CONFIG"):
            out["config"] = env["TLOG_CONFIG"]
        return out

    @classmethod
    def load(
        cls,
        *,
        file: str | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> "Config":
        cfg = cls()
        env_values = cls.from_env(env)
        file = file or env_values.pop("config", None)
        if file:
            cfg.update(cls.from_file(file))
        cfg.update(env_values)
        if overrides:
            cfg.update({k: v for k, v in overrides.items() if v is not None and v != []})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.integrator not in ("auto", "thread", "process"):
            raise ConfigError("integrator must be auto, thread or process")
        if self.log_format not in ("plain", "json"):
            raise ConfigError("log_format must be plain or json")
        if self.workers <= 0 or self.threads <= 0 or self.header_timeout <= 0 or self.body_timeout <= 0:
            raise ConfigError("workers, threads, header_timeout and body_timeout must be positive")
        if self.health_max_checkpoint_age < 0 or self.health_max_witness_age < 0:
            raise ConfigError("health ages must not be negative (0 = off)")
        if self.pending_status not in (202, 302):
            raise ConfigError("pending_status must be 202 or 302")
        if not (0 < self.port < 65536):
            raise ConfigError("port out of range")
        for name in ("max_statement_size", "max_body", "max_depth", "queue_limit", "max_batch", "lookup_limit",
                     "page_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if min(self.db_connect_timeout, self.db_statement_timeout, self.db_lock_timeout, self.lease_ttl) <= 0:
            raise ConfigError("db_connect_timeout, db_statement_timeout, db_lock_timeout and lease_ttl must be positive")
        if self.register_wait < 0 or self.max_wait < 0 or self.rate_limit < 0 or self.retry_after < 0 \
                or self.refusal_rate < 0 or self.lookup_rate < 0:
            raise ConfigError("waits, rates and retry_after must not be negative")
        if not 0 <= self.witness_quorum <= len(self.witnesses) or self.witness_interval <= 0:
            raise ConfigError("witness_quorum must be between 0 and the number of witnesses; witness_interval > 0")
        if self.max_body < self.max_statement_size:
            # a statement of the maximum size must fit in a request
            self.max_body = self.max_statement_size + 4096
        for name in ("issuer", "public_url"):
            v = getattr(self, name)
            if v is not None:
                import urllib.parse

                u = urllib.parse.urlsplit(v)
                if u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment:
                    raise ConfigError(f"{name} must be an http(s) URL without query or fragment, got {v!r}")
        if self.shard_close_size < 0:
            raise ConfigError("shard_close_size must not be negative (0 = never)")
        if self.shard_close_at is not None:
            try:
                parse_time(self.shard_close_at)
            except ValueError as e:
                raise ConfigError(f"shard_close_at: {e}") from None
        if self.shard_successor is not None:
            import urllib.parse

            u = urllib.parse.urlsplit(self.shard_successor)
            if u.scheme not in ("http", "https") or not u.netloc:
                raise ConfigError(f"shard_successor must be an http(s) URL, got {self.shard_successor!r}")
        if self.origin is not None and (not self.origin or any(c.isspace() or c == "+" for c in self.origin)):
            raise ConfigError("origin must be non-empty without spaces or '+'")

    # ---- derived --------------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def effective_origin(self) -> str:
        return self.origin or f"{self.host}:{self.port}/tlog"

    def effective_issuer(self) -> str:
        return self.issuer or f"http://{self.host}:{self.port}"

    def effective_public_url(self) -> str:
        """The base URL the log publishes (no trailing slash)."""
        return (self.public_url or self.effective_issuer()).rstrip("/")

    def location_prefix(self) -> str:
        """Path of the public URL: Location headers are ``<prefix>/entries/<id>``."""
        import urllib.parse

        return urllib.parse.urlsplit(self.effective_public_url()).path.rstrip("/")

    def storage_url(self) -> str:
        return self.database_url or str(self.data_path / "log.sqlite")

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`tlog.storage.open_storage` of :meth:`storage_url`."""
        if not self.database_url:
            return {}
        return {"connect_timeout": self.db_connect_timeout, "statement_timeout": self.db_statement_timeout,
                "lock_timeout": self.db_lock_timeout}

    def to_env(self) -> dict[str, str]:
        """Environment variables that reproduce this config (for the server worker processes):
        the settings that were given, and the origin and issuer fixed at start, so that what
        was not given stays "not given" there too (``given``: policy options, for one)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None or not (self.given(f.name) or f.name in ("origin", "issuer")):
                continue
            out["TLOG_" + f.name.upper()] = json.dumps(v) if isinstance(v, list) else str(v)
        return out


def _coerce(name: str, f: dataclasses.Field, value: Any) -> Any:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int) and not isinstance(default, bool):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, list):
            if isinstance(value, str):
                s = value.strip()
                if s.startswith("["):
                    value = json.loads(s)
                else:
                    value = [v for v in (x.strip() for x in s.split(",")) if v]
            if not isinstance(value, (list, tuple)):
                value = [value]
            if name == "allowed_algs":
                return [int(v) for v in value]
            if name in ("issuer_keys", "trust_anchors"):
                # a path, or {path, iss: [issuer identities it may claim]} (tlog/keys.py trust_entry)
                return [v if isinstance(v, dict) else str(v) for v in value]
            if name == "witnesses":
                return [parse_witness(v) for v in value]
            return [str(v) for v in value]
        # str | None fields
        return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad value for {name}: {value!r} ({e})") from None


def parse_witness(value: Any) -> dict[str, str]:
    """``{"url": ..., "vkey": ...}`` or ``"URL=VKEY"`` -> normalised dict (vkey checked: type 0x04)."""
    if isinstance(value, str):
        url, sep, vkey = value.partition("=")
        if not sep:
            raise ValueError(f"witness {value!r} is not URL=VKEY")
        value = {"url": url, "vkey": vkey}
    if not isinstance(value, dict) or not isinstance(value.get("url"), str) or not isinstance(value.get("vkey"), str):
        raise ValueError(f"witness {value!r} must have url and vkey strings")
    url, vkey = value["url"].strip().rstrip("/"), value["vkey"].strip()
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"witness url {url!r} must be http(s)")
    try:
        v = NoteVerifier.from_vkey(vkey)
    except VerificationError as e:
        raise ValueError(f"witness vkey {vkey!r}: {e}") from None
    if v.type != ALG_COSIGNATURE_V1:
        raise ValueError(f"witness vkey {vkey!r} is not a cosignature (type 0x04) key")
    return {"url": url, "vkey": vkey}


def parse_time(s: str) -> float:
    """An ISO 8601 time (``2027-01-01`` or ``2027-01-01T00:00:00Z``; UTC when no zone) -> seconds."""
    import datetime

    try:
        d = datetime.datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {s!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()
