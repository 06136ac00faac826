"""SMPP 3.4 upstream: the only package that imports smpplib.

- `bridge.smpp.codec`: PDU encode/decode over smpplib's codec (`SubmitSm`, `encode_submit`, …).
- `bridge.smpp.client`: `SmppBind`, one asyncio upstream per [[smsc]] entry.
- `bridge.smpp.pool`: `SmscPool`, prefix routing and fail-over.
- `bridge.smpp.bench`: `python -m bridge.smpp.bench`, submit_sm/s against the simulator.
"""
