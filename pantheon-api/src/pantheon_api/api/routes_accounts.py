"""Login, users (admins) and API keys (admins)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Form, HTTPException, Request, Response, status

from pantheon_api.adapters.store import Duplicate, utcnow
from pantheon_api.api.common import ERRORS, conflict, not_found
from pantheon_api.api.deps import Admin, Ctx, Viewer
from pantheon_api.api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    MeOut,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from pantheon_api.domain.accounts import hash_api_key, new_api_key, password_problem
from pantheon_common.auth import Role
from pantheon_contracts.names import Collections

router = APIRouter(prefix="/api", responses=ERRORS)
# A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY_HASH: dict[str, str] = {}


def _user_out(doc: dict[str, Any]) -> UserOut:
    return UserOut(
        username=str(doc["_id"]),
        role=Role(str(doc.get("role", "viewer"))),
        disabled=bool(doc.get("disabled")),
        created_at=doc.get("created_at"),
        updated_at=doc.get("updated_at"),
    )


@router.post(
    "/auth/token",
    response_model=TokenOut,
    tags=["auth"],
    responses={429: {"description": "Too many failed logins from this client address"}},
)
def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
) -> TokenOut:
    """OAuth2 password flow: a JWT access token for ``username``/``password``. Failed logins
    slow down the client address they come from (429 with ``Retry-After``), never the account."""
    client = request.client.host if request.client else "?"
    if wait := ctx.throttle.retry_after(client):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins from this address; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    user = ctx.store.get(Collections.USERS, username)
    stored = str(user.get("password_hash", "")) if user else ""
    if not stored:
        if "h" not in _DUMMY_HASH:
            _DUMMY_HASH["h"] = ctx.hasher.hash("not-a-real-password")
        stored = _DUMMY_HASH["h"]
    try:
        ok = ctx.hasher.verify(stored, password) and user is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or user.get("disabled"):
        ctx.throttle.failed(client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    ctx.throttle.succeeded(client)
    if ctx.hasher.check_needs_rehash(stored):
        ctx.store.update(
            Collections.USERS,
            {"_id": username},
            {"$set": {"password_hash": ctx.hasher.hash(password)}},
        )
    role = Role(str(user.get("role")))
    token = ctx.authenticator.issue(username, role)
    return TokenOut(access_token=token, expires_in=ctx.authenticator.token_ttl_s, role=role)


@router.get("/auth/me", response_model=MeOut, tags=["auth"])
def me(who: Viewer) -> MeOut:
    """Who the credentials belong to, and their role."""
    return MeOut(subject=who.subject, role=who.role, kind=who.kind)


# -- users ---------------------------------------------------------------------------------


def _check_password(ctx: Ctx, password: str) -> None:
    if problem := password_problem(password, dev_mode=ctx.dev_mode):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"password {problem}")


@router.get("/users", response_model=list[UserOut], tags=["users"])
def list_users(ctx: Ctx, _: Admin) -> list[UserOut]:
    """Every account (admin)."""
    return [_user_out(d) for d in ctx.store.find(Collections.USERS, {}, sort=[("_id", 1)])]


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def create_user(body: UserCreate, ctx: Ctx, _: Admin) -> UserOut:
    """Create an account (admin); the password is stored as an argon2 hash."""
    _check_password(ctx, body.password)
    now = utcnow()
    doc = {
        "_id": body.username,
        "password_hash": ctx.hasher.hash(body.password),
        "role": body.role.value,
        "disabled": False,
        "created_at": now,
        "updated_at": now,
    }
    try:
        ctx.store.insert(Collections.USERS, doc)
    except Duplicate as err:
        raise conflict(f"user {body.username} already exists") from err
    return _user_out(doc)


@router.get("/users/{username}", response_model=UserOut, tags=["users"])
def get_user(username: str, ctx: Ctx, _: Admin) -> UserOut:
    """One account (admin)."""
    doc = ctx.store.get(Collections.USERS, username)
    if doc is None:
        raise not_found(f"user {username}")
    return _user_out(doc)


@router.patch("/users/{username}", response_model=UserOut, tags=["users"])
def update_user(username: str, body: UserUpdate, ctx: Ctx, who: Admin) -> UserOut:
    """Change password, role or disabled (admin). An admin cannot demote or disable itself."""
    changes: dict[str, Any] = {}
    if body.password is not None:
        _check_password(ctx, body.password)
        changes["password_hash"] = ctx.hasher.hash(body.password)
    if body.role is not None:
        changes["role"] = body.role.value
    if body.disabled is not None:
        changes["disabled"] = body.disabled
    if (
        who.kind == "user"
        and who.subject == username
        and ((body.role is not None and body.role != Role.ADMIN) or body.disabled)
    ):
        raise conflict("you cannot demote or disable your own account")
    if not changes:
        doc = ctx.store.get(Collections.USERS, username)
    else:
        changes["updated_at"] = utcnow()
        doc = ctx.store.update(Collections.USERS, {"_id": username}, {"$set": changes})
    if doc is None:
        raise not_found(f"user {username}")
    return _user_out(doc)


@router.delete("/users/{username}", status_code=204, tags=["users"])
def delete_user(username: str, ctx: Ctx, who: Admin) -> Response:
    """Delete an account (admin); not your own."""
    if who.kind == "user" and who.subject == username:
        raise conflict("you cannot delete your own account")
    if not ctx.store.delete(Collections.USERS, {"_id": username}):
        raise not_found(f"user {username}")
    return Response(status_code=204)


# -- API keys ------------------------------------------------------------------------------


def _key_out(doc: dict[str, Any]) -> ApiKeyOut:
    return ApiKeyOut.model_validate({**doc, "id": str(doc["_id"])})


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["api keys"])
def list_api_keys(ctx: Ctx, _: Admin) -> list[ApiKeyOut]:
    """Every API key (admin); the keys themselves are never shown again."""
    docs = ctx.store.find(Collections.API_KEYS, {}, sort=[("created_at", 1)])
    return [_key_out(d) for d in docs]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["api keys"])
def create_api_key(body: ApiKeyCreate, ctx: Ctx, who: Admin) -> ApiKeyCreated:
    """A new key for a machine (slicer, web shop), sent as ``X-API-Key``; shown once."""
    key = new_api_key()
    doc = {
        "_id": uuid.uuid4().hex,
        "name": body.name,
        "role": body.role.value,
        "hash": hash_api_key(key),
        "prefix": key[:10],
        "created_by": who.subject,
        "created_at": utcnow(),
        "last_used_at": None,
        "revoked_at": None,
    }
    ctx.store.insert(Collections.API_KEYS, doc)
    return ApiKeyCreated.model_validate({**doc, "id": doc["_id"], "key": key})


@router.delete("/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api keys"])
def revoke_api_key(key_id: str, ctx: Ctx, _: Admin) -> ApiKeyOut:
    """Revoke a key (kept for the record; it no longer authenticates)."""
    doc = ctx.store.update(
        Collections.API_KEYS, {"_id": key_id}, {"$set": {"revoked_at": utcnow()}}
    )
    if doc is None:
        raise not_found(f"API key {key_id}")
    return _key_out(doc)


__all__ = ["router"]
