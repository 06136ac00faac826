"""Built-in SMSC simulator: a real SMPP 3.4 server on loopback, with its own PDU codec and text
decoding (it imports neither smpplib nor bridge.core, so the bridge's client and this server
cannot share a bug).

- `SmscSimulator`, `ReceivedSubmit`, `ReceivedMessage`, `ConcatInfo`, `run_simulator`:
  bridge.simulator.server
- misbehaving variants for failure tests: bridge.simulator.misbehaving
- the codec and the text tables: bridge.simulator.pdu, bridge.simulator.text
"""

from bridge.simulator.misbehaving import (
    BindRefusingSimulator,
    DeadPeerSimulator,
    DroppingSimulator,
    GenericNackSimulator,
    ReceiptBeforeResponseSimulator,
    ReceiptFormatSimulator,
    SilentSubmitSimulator,
    ThrottlingSimulator,
    UnbindingSimulator,
)
from bridge.simulator.server import (
    ConcatInfo,
    ReceivedMessage,
    ReceivedSubmit,
    SmscSimulator,
    run_simulator,
)

__all__ = [
    "SmscSimulator", "ReceivedSubmit", "ReceivedMessage", "ConcatInfo", "run_simulator",
    "SilentSubmitSimulator", "BindRefusingSimulator", "GenericNackSimulator",
    "UnbindingSimulator", "ReceiptBeforeResponseSimulator", "DeadPeerSimulator",
    "DroppingSimulator", "ThrottlingSimulator", "ReceiptFormatSimulator",
]
