"""HTTP API: utilization reports, raw intervals and prints (JSON or CSV), health and metrics."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from pantheon_common.auth import service_token_guard
from pantheon_common.errors import StoreUnavailable
from pantheon_common.http import ReadinessCheck, add_observability
from printer_utilization.adapters.store import IntervalRow, MysqlStore, PrintRow
from printer_utilization.domain.report import (
    EARLIEST,
    Grouping,
    PrinterReport,
    RangeRefused,
    Report,
    UsageRow,
    bucket_count,
    build_report,
    make_buckets,
)
from printer_utilization.domain.states import REPORT_STATES

DEFAULT_RANGE = timedelta(hours=24)
MAX_BUCKETS = 20_000

Format = Literal["json", "csv"]
FromQ = Annotated[
    datetime | None,
    Query(alias="from", description="range start, ISO 8601 (naive = UTC); default to - 24 h"),
]
ToQ = Annotated[
    datetime | None, Query(alias="to", description="range end, ISO 8601; default and cap: now")
]
PrintersQ = Annotated[
    list[int] | None, Query(alias="printer_id", description="repeat to select several printers")
]
GroupQ = Annotated[Grouping, Query(alias="group", description="none, day or week (UTC)")]
FormatQ = Annotated[Format, Query(alias="format", description="json or csv")]
LimitQ = Annotated[int, Query(ge=1, le=100_000)]


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def _utc(value: datetime, name: str) -> datetime:
    """``value`` in UTC (naive = UTC); 422 when it has no UTC equivalent (year 1 or 9999 with
    an offset that takes it past the calendar's ends)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as err:
        raise _unprocessable(f"'{name}' is outside the years 1..9999 in UTC") from err


def _range(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    stop = min(_utc(end, "to"), now) if end is not None else now
    if stop <= EARLIEST:
        raise _unprocessable(f"'to' must be after {EARLIEST.isoformat()}")
    begin = _utc(start, "from") if start is not None else max(stop - DEFAULT_RANGE, EARLIEST)
    if stop <= begin:
        raise _unprocessable("'from' must be before 'to' (and before now)")
    if begin < EARLIEST:
        raise _unprocessable(f"'from' must not be before {EARLIEST.isoformat()}")
    return begin, stop


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def row_json(row: UsageRow) -> dict[str, Any]:
    """A report row as JSON."""
    return {
        "start": _iso(row.start),
        "end": _iso(row.end),
        "hours": {s.value: row.hours[s] for s in REPORT_STATES},
        "percent": {s.value: row.percent[s] for s in REPORT_STATES},
        "prints_finished": row.prints_finished,
        "prints_failed": row.prints_failed,
        "filament_g": row.filament_g,
    }


def printer_json(printer: PrinterReport) -> dict[str, Any]:
    """One printer's part of a report as JSON."""
    return {
        "printer_id": printer.printer_id,
        "total": row_json(printer.total),
        "buckets": [row_json(r) for r in printer.buckets],
    }


def report_json(report: Report) -> dict[str, Any]:
    """A whole report as JSON."""
    return {
        "from": _iso(report.start),
        "to": _iso(report.end),
        "group": report.grouping.value,
        "states": [s.value for s in REPORT_STATES],
        "note": "time without data counts as offline; days and weeks are UTC",
        "printers": [printer_json(p) for p in report.printers],
        "farm": {
            "printers": len(report.printers),
            "total": row_json(report.farm_total),
            "buckets": [row_json(r) for r in report.farm],
        },
    }


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def report_csv(report: Report) -> Response:
    """One line per printer (and the farm) per bucket."""
    header = [
        "scope",
        "printer_id",
        "start",
        "end",
        *(f"hours_{s.value}" for s in REPORT_STATES),
        *(f"percent_{s.value}" for s in REPORT_STATES),
        "prints_finished",
        "prints_failed",
        "filament_g",
    ]

    def line(scope: str, row: UsageRow) -> list[Any]:
        return [
            scope,
            "" if row.printer_id is None else row.printer_id,
            _iso(row.start),
            _iso(row.end),
            *(f"{row.hours[s]:.6f}" for s in REPORT_STATES),
            *(f"{row.percent[s]:.4f}" for s in REPORT_STATES),
            row.prints_finished,
            row.prints_failed,
            f"{row.filament_g:.3f}",
        ]

    rows = [line("printer", r) for p in report.printers for r in p.buckets]
    rows += [line("farm", r) for r in report.farm]
    return _csv(header, rows, "utilization.csv")


def _interval_json(row: IntervalRow) -> dict[str, Any]:
    return {
        "printer_id": row.printer_id,
        "state": row.state,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "last_seen_at": _iso(row.last_seen_at),
    }


def _print_json(row: PrintRow) -> dict[str, Any]:
    return {
        "print_id": row.print_id,
        "printer_id": row.printer_id,
        "job_id": row.job_id,
        "file": row.file,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "result": row.result,
        "duration_s": row.duration_s,
        "filament_g": row.filament_g,
    }


def create_app(
    store: MysqlStore,
    *,
    token: str,
    known_printers: Callable[[], set[int]] = set,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    checks: Mapping[str, ReadinessCheck] | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The FastAPI app; ``token`` is the shared service token (empty: every data call is 401)."""

    app = FastAPI(title="printer-utilization", version="0.1.0")
    add_observability(app, service="printer-utilization", checks=checks, registry=registry)
    router = APIRouter(dependencies=[Depends(service_token_guard(token))])

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except StoreUnavailable as err:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err)) from err

    async def report(
        start: datetime | None,
        end: datetime | None,
        grouping: Grouping,
        printer_ids: list[int] | None,
    ) -> Report:
        begin, stop = _range(start, end, clock())
        try:
            count = bucket_count(begin, stop, grouping)
            if count > MAX_BUCKETS:
                raise _unprocessable(
                    f"too many buckets ({count} {grouping.value} buckets; at most {MAX_BUCKETS}):"
                    " shorten the range or group by week"
                )
            buckets = make_buckets(begin, stop, grouping)
        except RangeRefused as err:
            raise _unprocessable(str(err)) from err
        if printer_ids:
            ids: set[int] = set(printer_ids)
        else:
            ids = set(known_printers()) | await run(store.printer_ids)
        usage = await run(store.usage, buckets, sorted(ids) if printer_ids else None)
        return build_report(buckets, grouping, ids, usage)

    @router.get("/utilization", summary="Utilization per printer and for the farm")
    async def utilization(
        start: FromQ = None,
        end: ToQ = None,
        group: GroupQ = Grouping.NONE,
        printer_ids: PrintersQ = None,
        fmt: FormatQ = "json",
    ) -> Response:
        """Hours and % per state (printing, paused, idle, waiting_for_robot, error, offline),
        prints finished/failed and filament (finished prints) per printer and for the farm,
        in total and per bucket. Percentages of a printer sum to 100: time without data is
        offline. The farm row is the sum over the printers (printer-hours)."""
        result = await report(start, end, group, printer_ids)
        if fmt == "csv":
            return report_csv(result)
        return JSONResponse(report_json(result))

    @router.get("/utilization/printers/{printer_id}", summary="Utilization of one printer")
    async def printer_utilization(
        printer_id: int,
        start: FromQ = None,
        end: ToQ = None,
        group: GroupQ = Grouping.NONE,
        fmt: FormatQ = "json",
    ) -> Response:
        """Like ``/utilization`` for one printer."""
        result = await report(start, end, group, [printer_id])
        if fmt == "csv":
            return report_csv(result)
        body = printer_json(result.printers[0])
        body.update({"from": _iso(result.start), "to": _iso(result.end), "group": group.value})
        return JSONResponse(body)

    @router.get("/intervals", summary="Raw state intervals")
    async def intervals(
        start: FromQ = None,
        end: ToQ = None,
        printer_ids: PrintersQ = None,
        limit: LimitQ = 10_000,
        fmt: FormatQ = "json",
    ) -> Response:
        """Intervals overlapping the range (not clipped); ``ended_at`` null while open."""
        begin, stop = _range(start, end, clock())
        rows: list[IntervalRow] = await run(store.intervals, begin, stop, printer_ids, limit)
        if fmt == "csv":
            header = ["printer_id", "state", "started_at", "ended_at", "last_seen_at"]
            return _csv(
                header,
                [[_interval_json(r)[k] or "" for k in header] for r in rows],
                "intervals.csv",
            )
        return JSONResponse({"intervals": [_interval_json(r) for r in rows]})

    @router.get("/prints", summary="Print jobs")
    async def prints(
        start: FromQ = None,
        end: ToQ = None,
        printer_ids: PrintersQ = None,
        limit: LimitQ = 10_000,
        fmt: FormatQ = "json",
    ) -> Response:
        """Prints started in the range: file, start, end, result, duration, filament."""
        begin, stop = _range(start, end, clock())
        rows: list[PrintRow] = await run(store.prints, begin, stop, printer_ids, limit)
        if fmt == "csv":
            header = [
                "print_id",
                "printer_id",
                "job_id",
                "file",
                "started_at",
                "ended_at",
                "result",
                "duration_s",
                "filament_g",
            ]
            body = [_print_json(r) for r in rows]
            return _csv(
                header,
                [["" if b[k] is None else b[k] for k in header] for b in body],
                "prints.csv",
            )
        return JSONResponse({"prints": [_print_json(r) for r in rows]})

    app.include_router(router)
    return app
