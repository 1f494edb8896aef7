"""Users and API keys: names, password policy, key format and hashing (no I/O)."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

from pantheon_common.auth import Role
from pantheon_common.settings import secret_problem

__all__ = [
    "API_KEY_PREFIX",
    "MIN_PASSWORD_LENGTH",
    "USERNAME_PATTERN",
    "AccountError",
    "hash_api_key",
    "new_api_key",
    "password_problem",
    "role_allows",
]

USERNAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$"
MIN_PASSWORD_LENGTH: Final = 12
API_KEY_PREFIX: Final = "pk_"


class AccountError(Exception):
    """A refused account change (HTTP 409/422)."""


def password_problem(password: str, *, dev_mode: bool = False) -> str | None:
    """Why ``password`` is not acceptable, or None (dev mode accepts 8+ characters)."""
    if dev_mode:
        return None if len(password) >= 8 else "is shorter than 8 characters"
    if problem := secret_problem(password):
        return problem
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"is shorter than {MIN_PASSWORD_LENGTH} characters"
    if len(password) > 1024:
        return "is longer than 1024 characters"
    if re.fullmatch(r"(.)\1*", password):
        return "repeats one character"
    return None


def new_api_key() -> str:
    """A fresh API key (shown once; only its hash is stored)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Hex SHA-256 of the key: keys are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def role_allows(role: Role, required: Role) -> bool:
    """True when ``role`` may call a route that needs ``required``."""
    return role.at_least(required)
