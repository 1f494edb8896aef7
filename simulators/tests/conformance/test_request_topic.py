"""Finding 2: subscribing to ``device/<serial>/request`` (bambu-lan-protocol.md 2.3, 11.4).

P1/A1 firmware kills the TCP connection of a client that subscribes to the request topic; the
client gets no SUBACK (BBD's ``_on_subscribe``/``_on_disconnect`` degrade on exactly that;
PrintStash#69 reproduced it on an A1). X1 keeps the connection. No public capture pins what
an X1 answers (a refusal or a grant that never delivers anything would both fit section
11.4); the simulator's README documents "is refused on X1", so that is asserted: a SUBACK
with the failure code 0x80, nothing delivered on the request topic, the client still
connected and still answered.

The client is ``stranger.StrangerMqtt`` (paho): many scripts subscribe to both topics to see
what was sent.
"""

import time
from collections.abc import Callable

import pytest

from .simfarm import MODELS, X1_MODELS
from .stranger import StrangerMqtt

pytestmark = pytest.mark.integration

SUBACK_FAILURE = 0x80


@pytest.mark.parametrize("model", MODELS)
def test_request_topic_subscription(
    model: str, printer: int, mqtt: Callable[[int], StrangerMqtt]
) -> None:
    """P1/A1: the connection drops and the subscription is never acknowledged.
    X1: SUBACK 0x80 (refused), the connection stays, nothing comes on the request topic,
    ``pushall`` is still answered."""
    client = mqtt(printer)
    client.pushall()  # subscribed to the report topic and hearing the printer
    mid = client.subscribe(client.request_topic)

    if model in X1_MODELS:
        time.sleep(1.0)
        assert client.disconnects == [], "X1 keeps the connection of a request subscriber"
        assert mid in client.subacks, "X1 answers the subscription"
        codes = client.subacks[mid].codes
        assert codes == [SUBACK_FAILURE], f"README: refused on X1; SUBACK {codes}"
        mark = client.mark()
        client.pushall(timeout=5)  # our own request: a granted subscription would echo it
        time.sleep(0.5)
        echoed = [m for m in client.received[mark:] if m.topic == client.request_topic]
        assert echoed == [], "X1 never delivers the request topic to a client"
        assert client.disconnects == []
        assert client.client.is_connected()
        return

    assert client.wait_disconnect(timeout=5.0), "P1/A1 drop a request subscriber"
    dropped_at = client.disconnects[0][0]
    time.sleep(0.5)  # a late SUBACK would still be counted
    acked = client.subacks.get(mid)
    assert acked is None, (
        f"the client saw a SUBACK {acked.codes} for the request topic "
        f"{dropped_at - acked.t:.3f} s before the drop; P1/A1 drop it without one"
    )
