"""The first admin: from the CLI (``pantheon-api create-admin``) or from the environment."""

from __future__ import annotations

import logging
import re

from argon2 import PasswordHasher

from pantheon_api.adapters.store import Duplicate, FarmStore, utcnow
from pantheon_api.domain.accounts import USERNAME_PATTERN, password_problem
from pantheon_common.auth import Role
from pantheon_common.errors import ConfigurationError
from pantheon_contracts.names import Collections

log = logging.getLogger(__name__)


def admin_exists(store: FarmStore) -> bool:
    return store.count(Collections.USERS, {"role": Role.ADMIN.value}) > 0


def create_admin(
    store: FarmStore,
    hasher: PasswordHasher,
    username: str,
    password: str,
    *,
    dev_mode: bool = False,
    replace_password: bool = False,
) -> str:
    """Create (or, with ``replace_password``, reset) admin ``username``; returns what happened."""
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise ConfigurationError(f"invalid username {username!r}")
    if problem := password_problem(password, dev_mode=dev_mode):
        raise ConfigurationError(f"the admin password {problem}")
    now = utcnow()
    doc = {
        "_id": username,
        "password_hash": hasher.hash(password),
        "role": Role.ADMIN.value,
        "disabled": False,
        "created_at": now,
        "updated_at": now,
    }
    try:
        store.insert(Collections.USERS, doc)
    except Duplicate as err:
        if not replace_password:
            raise ConfigurationError(
                f"user {username} exists; use --reset-password to set a new password"
            ) from err
        store.update(
            Collections.USERS,
            {"_id": username},
            {
                "$set": {
                    "password_hash": doc["password_hash"],
                    "role": Role.ADMIN.value,
                    "disabled": False,
                    "updated_at": now,
                }
            },
        )
        return f"admin {username}: password reset"
    return f"admin {username} created"


def bootstrap_admin_from_env(
    store: FarmStore,
    hasher: PasswordHasher,
    username: str | None,
    password: str | None,
    *,
    dev_mode: bool,
) -> str | None:
    """``PANTHEON_ADMIN_USERNAME``/``PASSWORD``: create that admin only if no admin exists."""
    if not username and not password:
        return None
    if not username or not password:
        raise ConfigurationError("set both PANTHEON_ADMIN_USERNAME and PANTHEON_ADMIN_PASSWORD")
    if admin_exists(store):
        log.info("an admin exists; PANTHEON_ADMIN_* ignored")
        return None
    return create_admin(store, hasher, username, password, dev_mode=dev_mode)
