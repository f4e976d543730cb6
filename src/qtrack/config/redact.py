"""Secrets never leave qtrack: credentials in URIs, secret-looking config values and the values of
secret environment variables are masked in everything qtrack writes (params, tags, config.yaml,
logs, summaries, printed output)."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from qtrack.config.store_uri import mask_uri

MASK = "***"
# A config key whose last part is, or ends in, one of these words holds a secret (seed_key names a
# parameter, not a secret). `api_key`, `api-key`, `apikey`, `private_key`, `db.passphrase`, `auth`, ...
_SECRET_WORDS = (r"password|passwd|pwd|pass|passphrase|token|secret|secrets|key|apikey|credentials?|auth|"
                 r"authorization|private_?key|access_?key|session_?key|signature|cookie")
_SECRET_KEY = re.compile(rf"(^|[_\-.])({_SECRET_WORDS})$", re.IGNORECASE)
_NOT_SECRET = {"seed_key"}
# Environment variables whose values are masked wherever they appear: MLFLOW_TRACKING_PASSWORD, DB_PASS,
# AWS_SECRET_ACCESS_KEY, VENDOR_APIKEY, GITHUB_TOKEN, ...
_SECRET_ENV = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|(^|_)PASS(_|$)|TOKEN|SECRET|(^|_)(API_?)?KEY(_|$)|APIKEY|"
                         r"CREDENTIAL|(^|_)AUTH(_|$)|PRIVATE", re.IGNORECASE)
_MIN_SECRET_LENGTH = 4  # shorter values would mask innocent text


def is_secret_key(key: str) -> bool:
    last = str(key).rsplit(".", 1)[-1]
    return last.lower() not in _NOT_SECRET and bool(_SECRET_KEY.search(last))


def secret_values() -> list[str]:
    """Values of secret environment variables, longest first (read now: tests and CI change them)."""
    values = {value for name, value in os.environ.items()
              if _SECRET_ENV.search(name) and len(value) >= _MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def text(value: str) -> str:
    masked = mask_uri(value)
    for secret in secret_values():
        masked = masked.replace(secret, MASK)
    return masked


def argv(args: list[str]) -> list[str]:
    """Command-line arguments with secret overrides (`+vendor.token=...`) and secret text masked."""
    masked = []
    for arg in args:
        key, sep, _ = arg.partition("=")
        masked.append(f"{key}={MASK}" if sep and is_secret_key(key.lstrip("+~")) else text(arg))
    return masked


def tree(value: Any, key: str = "") -> Any:
    """A copy of a config tree with secret keys' values and any secret text masked."""
    if isinstance(value, dict):
        return {k: tree(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [tree(item, key) for item in value]
    if value not in (None, "") and is_secret_key(key):
        return MASK
    return text(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Masks secrets in every record a handler writes (the run log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = text(record.exc_text)
        return True
