"""The log's HTTP front (SCRAPI, C2SP checkpoint and tiles): ``create_app(config)``."""

from .app import create_app

__all__ = ["create_app"]
