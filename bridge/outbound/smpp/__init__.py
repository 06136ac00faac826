"""SMPP 3.4 upstream: the only package that imports smpplib.

- `bridge.outbound.smpp.codec`: PDU encode/decode over smpplib's codec (`SubmitSm`, `encode_submit`, …).
- `bridge.outbound.smpp.client`: `SmppBind`, one asyncio upstream per [[smsc]] entry.
- `bridge.outbound.smpp.pool`: `SmscPool`, prefix routing and fail-over.
"""
