"""Quick end-to-end checks of the main flows over the real MongoDB-protocol server."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from pantheon_common.auth import Role
from pantheon_devtools.pytest_plugin import MongoTestDb

from .conftest import PASSWORD, SECRET_KEY, SERVICE_TOKEN, Api


def test_login_and_me(api: Api) -> None:
    r = api.client.post("/api/auth/token", data={"username": "admin-user", "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    me = api.client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {"subject": "admin-user", "role": "admin", "kind": "user"}
    bad = api.client.post(
        "/api/auth/token", data={"username": "admin-user", "password": "nope-nope"}
    )
    assert bad.status_code == 401
    assert bad.json() == {"detail": "wrong username or password"}


def test_upload_list_job(api: Api) -> None:
    body = (
        b"; total estimated time: 1h 2m 3s\n; printer_model = Bambu Lab P1S\n"
        b"; curr_bed_type = Textured PEI Plate\n; total filament weight [g] : 12.5\nG28\n"
    )
    r = api.client.post(
        "/api/files", files={"file": ("cube.gcode", body)}, headers=api.headers(Role.OPERATOR)
    )
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["printer_model"] == "P1S"
    assert meta["bed_type"] == "textured_pei"
    assert meta["estimated_s"] == 3723
    assert meta["filament_g"] == 12.5
    r = api.client.post(
        "/api/jobs", json={"file": "cube.gcode"}, headers=api.headers(Role.OPERATOR)
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["target"] == {"printer_id": None, "model": "P1S"}
    assert job["status"] == "queued"
    r = api.client.delete("/api/files/cube.gcode", headers=api.headers(Role.OPERATOR))
    assert r.status_code == 409


def test_create_admin_cli_and_env_bootstrap(
    mongo_db: MongoTestDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pantheon_api.__main__ import main
    from pantheon_api.adapters.store import FarmStore
    from pantheon_api.admin import bootstrap_admin_from_env
    from pantheon_common.errors import ConfigurationError
    from pantheon_common.mongo import mongo_client

    monkeypatch.setenv("PANTHEON_ENV", "production")
    monkeypatch.setenv("MONGO_URL", mongo_db.url)
    monkeypatch.setenv("MONGO_DB", mongo_db.name)
    monkeypatch.setenv("PANTHEON_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("SERVICE_TOKEN", SERVICE_TOKEN)
    weak = tmp_path / "weak"
    weak.write_text("changeme\n")
    assert main(["create-admin", "--username", "root-admin", "--password-file", str(weak)]) == 2
    good = tmp_path / "good"
    good.write_text(PASSWORD + "\n")
    assert main(["create-admin", "--username", "root-admin", "--password-file", str(good)]) == 0
    client = mongo_client(mongo_db.url, app_name="test")
    try:
        store = FarmStore(client[mongo_db.name])
        user = store.get("users", "root-admin")
        assert user is not None
        assert user["role"] == "admin"
        assert PASSWORD not in str(user)
        assert str(user["password_hash"]).startswith("$argon2")
        # An admin exists: the environment bootstrap does nothing.
        assert (
            bootstrap_admin_from_env(store, PasswordHasher(), "other", PASSWORD, dev_mode=False)
            is None
        )
        store.delete("users", {"_id": "root-admin"})
        with pytest.raises(ConfigurationError, match="placeholder"):
            bootstrap_admin_from_env(store, PasswordHasher(), "other", "password", dev_mode=False)
        assert bootstrap_admin_from_env(store, PasswordHasher(), "other", PASSWORD, dev_mode=False)
    finally:
        client.close()
