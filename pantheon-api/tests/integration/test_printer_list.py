"""GET /api/printers: filters and pages over the seeded farm (real MongoDB-protocol server)."""

from __future__ import annotations

from pantheon_common.auth import Role

from .conftest import Api


def _ids(api: Api, **params: object) -> tuple[list[int], int]:
    r = api.client.get("/api/printers", params=params, headers=api.headers(Role.VIEWER))
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()], int(r.headers["X-Total-Count"])


def test_printers_are_listed_by_id_filtered_and_paged(api: Api) -> None:
    for printer_id in (34, 11, 25, 12, 41, 13, 22, 31, 14, 23, 15, 21):  # added out of order
        r = api.client.post(
            "/api/printers",
            json={
                "id": printer_id,
                "model": "X1C" if printer_id % 2 else "P1S",
                "host": f"10.0.0.{printer_id}",
                "serial": f"SERIAL{printer_id:06d}",
            },
            headers=api.headers(Role.ADMIN),
        )
        assert r.status_code == 201, r.text
    every, total = _ids(api)
    assert every == [11, 12, 13, 14, 15, 21, 22, 23, 25, 31, 34, 41]
    assert total == 12

    page, page_total = _ids(api, limit=4, offset=3)
    assert page == every[3:7]
    assert page_total == total
    last, _ = _ids(api, limit=4, offset=total - 2)
    assert last == every[-2:]
    assert _ids(api, offset=total) == ([], total)

    assert _ids(api, model="X1C", limit=2, offset=1) == ([13, 15], 8)
    assert _ids(api, model="P1S") == ([12, 14, 22, 34], 4)

    for bad in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}):
        r = api.client.get("/api/printers", params=bad, headers=api.headers(Role.VIEWER))
        assert r.status_code == 422, bad
