"""Intake of ``ready`` and ``homing`` deliveries: validate, record the tasks durably, then ack.

The handlers run on the AMQP consumer threads. They return (ack) only once the tasks are in
MongoDB; a duplicate key means the print was recorded before, which is an ack too. A malformed
body or an unknown printer is dead-lettered with the reason; MongoDB down means requeue.
"""

import logging
import uuid
from collections.abc import Callable

from pantheon_common.amqp import Delivery, RejectMessage, RetryLater
from pantheon_common.errors import StoreUnavailable
from pantheon_common.farm import FarmLayout
from pantheon_contracts.errors import ContractError
from pantheon_contracts.ready import HomingRequest, ReadyNotification
from robot_arm_orchestrator.adapters.store import TaskStore
from robot_arm_orchestrator.crash import CrashPoints
from robot_arm_orchestrator.domain.tasks import plan_homing, plan_tasks

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
    ) -> None:
        self._store = store
        self._layout = layout
        self._crash = crash
        self._recorded = recorded

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
            synthetic = False
            print_id = ready.print_id or printer.current_print_id
            if print_id is None:
                # Hand-typed and no print known: a new id, so each such message is one swap.
                print_id = f"manual-{printer_id}-{uuid.uuid4().hex}"
                synthetic = True
            plans = plan_tasks(printer_id, printer.bed, print_id)
            new = self._store.record(
                plans,
                source="ready",
                synthetic=synthetic,
                note=None if ready.print_id else "hand-typed ready (no message_id)",
            )
        except StoreUnavailable as err:
            raise RetryLater(str(err), RETRY_DELAY_S) from err
        if new:
            log.info(
                "recorded %d robot task(s) for print %s on printer %d", new, print_id, printer_id
            )
        else:
            log.info("print %s on printer %d was recorded before: ack", print_id, printer_id)
        self._crash.reached("after_record")
        self._recorded()

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
