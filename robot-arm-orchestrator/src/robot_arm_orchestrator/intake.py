"""Intake of ``ready`` and ``homing`` deliveries: validate, record the tasks durably, then ack.

The handlers run on the AMQP consumer threads. They return (ack) only once the tasks are in
MongoDB; a duplicate key means the print was recorded before, which is an ack too. A malformed
body or an unknown printer is dead-lettered with the reason; MongoDB down means requeue.

A ``ready`` is about a print (domain/interlock.py ``bind_ready``): a ``message_id`` that names
no print of that printer, or a print that is not the printer's latest, is dead-lettered. The
door interlock is checked at once: a swap whose print has not ended, or whose printer is not
safe to open, is recorded ``held`` with the reason, never sent.
"""

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from pantheon_common.amqp import Delivery, RejectMessage, RetryLater
from pantheon_common.errors import StoreUnavailable
from pantheon_common.farm import FarmLayout
from pantheon_contracts.errors import ContractError
from pantheon_contracts.ready import HomingRequest, ReadyNotification
from robot_arm_orchestrator.adapters.store import Hold, TaskStore
from robot_arm_orchestrator.crash import CrashPoints
from robot_arm_orchestrator.domain.interlock import (
    Bound,
    DeadLetter,
    PrinterLive,
    Repeat,
    bind_ready,
    door_check,
)
from robot_arm_orchestrator.domain.tasks import HoldScope, HoldUntil, plan_homing, plan_tasks

log = logging.getLogger(__name__)

RETRY_DELAY_S = 2.0


class Intake:
    """Turns deliveries into recorded tasks."""

    def __init__(
        self,
        store: TaskStore,
        layout: FarmLayout,
        crash: CrashPoints,
        recorded: Callable[[], None],
        *,
        report_max_age_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._layout = layout
        self._crash = crash
        self._recorded = recorded
        self._max_age_s = report_max_age_s
        self._now = clock

    def handle_ready(self, delivery: Delivery) -> None:
        """One ``ready``: record take + replace for the finished print (idempotent)."""
        try:
            ready = ReadyNotification.from_delivery(
                delivery.body, delivery.message_id, delivery.timestamp
            )
        except ContractError as err:
            raise RejectMessage(err.reason) from err
        printer_id = ready.printer_id
        if printer_id not in self._layout.printer_ids:
            raise RejectMessage(f"unknown printer {printer_id}: not in the farm layout")
        try:
            printer = self._store.printer(printer_id)
            if printer is None:
                raise RejectMessage(f"unknown printer {printer_id}: not in MongoDB printers")
            message_id = ready.print_id
            binding = bind_ready(
                printer=printer,
                message_id=message_id,
                named=self._store.print_ref(message_id) if message_id else None,
                recorded=self._store.recorded(message_id) if message_id else False,
                open_swap=None if message_id else self._store.open_swap_task(printer_id),
                new_id=f"manual-{printer_id}-{uuid.uuid4().hex}",
            )
            if isinstance(binding, DeadLetter):
                log.warning("ready for printer %d dead-lettered: %s", printer_id, binding.reason)
                raise RejectMessage(binding.reason)
            if isinstance(binding, Repeat):
                log.info("ready for printer %d: %s: ack", printer_id, binding.reason)
                self._recorded()  # the dispatcher looks again (a held swap may re-arm)
                return
            new, hold = self._record(binding, printer_id, printer, hand_typed=not message_id)
        except StoreUnavailable as err:
            raise RetryLater(str(err), RETRY_DELAY_S) from err
        print_id = binding.print_id
        if not new:
            log.info("print %s on printer %d was recorded before: ack", print_id, printer_id)
        elif hold is not None:
            log.warning(
                "recorded %d robot task(s) for print %s on printer %d, held: %s",
                new,
                print_id,
                printer_id,
                hold.reason,
            )
        else:
            log.info(
                "recorded %d robot task(s) for print %s on printer %d", new, print_id, printer_id
            )
        self._crash.reached("after_record")
        self._recorded()

    def _record(
        self, binding: Bound, printer_id: int, printer: PrinterLive, *, hand_typed: bool
    ) -> tuple[int, Hold | None]:
        """Record the swap of a bound print, held when the door interlock refuses it now."""
        plans = plan_tasks(printer_id, printer.bed, binding.print_id)
        first = plans[0]
        check = door_check(
            first.kind,
            printer,
            print_id=None if binding.synthetic else binding.print_id,
            print_ended=None if binding.synthetic else binding.ended,
            now=self._now(),
            max_age_s=self._max_age_s,
            group=binding.print_id,
        )
        hold = None
        if not check.safe:
            hold = Hold(
                f"{'hand-typed ready' if hand_typed else 'ready'}: {check.reason}",
                HoldScope.PRINTER,
                HoldUntil.PRINT_END if check.until_print_end else None,
            )
        note = "hand-typed ready (no message_id)" if hand_typed else None
        new = self._store.record(
            plans, source="ready", synthetic=binding.synthetic, note=note, hold=hold
        )
        return new, hold

    def handle_homing(self, delivery: Delivery) -> None:
        """One ``homing``: record one homing task (idempotent on the message id if any)."""
        request = HomingRequest.from_delivery(delivery.body, delivery.message_id)
        request_id = request.message_id or uuid.uuid4().hex
        try:
            new = self._store.record(
                [plan_homing(request_id)], source="homing", note=request.note or None
            )
        except StoreUnavailable as err:
            raise RetryLater(str(err), RETRY_DELAY_S) from err
        log.info("homing request %s %s", request_id, "recorded" if new else "was recorded before")
        self._crash.reached("after_record")
        self._recorded()
