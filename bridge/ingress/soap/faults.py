"""The one table from the §5 error model to SOAP faults, and the fault documents themselves.

Faults are rendered here, not by Spyne: Spyne's SOAP 1.2 fault path is broken (a schema
validation error becomes a plain-text 500) and its messages may carry exception text. Every
fault the bridge sends comes from `render_fault`, so none ever carries a stack trace.

SOAP 1.1::

    <soap:Fault>
      <faultcode>soap:Client.INVALID_SOURCE</faultcode>      (Server.X for retryable server errors)
      <faultstring>Invalid sender: …</faultstring>
      <detail><tns:error><tns:name>INVALID_SOURCE</tns:name><tns:code>1707</tns:code>
              <tns:retry>false</tns:retry></tns:error></detail>
    </soap:Fault>

SOAP 1.2: Code/Value `soap:Sender` or `soap:Receiver`, Code/Subcode/Value `tns:INVALID_SOURCE`,
Reason/Text, and the same `tns:error` element inside `Detail`.

HTTP status: 1.1 faults are 500 (SOAP 1.1 §6.2); 1.2 Sender faults 400, Receiver 500 (SOAP 1.2
part 2 §7.5.2); authentication faults 401 and oversized requests 413 in both versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Mapping
from xml.sax.saxutils import escape

from bridge.core.errors import ERROR_TABLE, ErrorName

TNS = "urn:sms-bridge:v1"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"


class SoapVersion(str, Enum):
    V11 = "1.1"
    V12 = "1.2"

    @property
    def envelope_ns(self) -> str:
        return SOAP11_ENV if self is SoapVersion.V11 else SOAP12_ENV

    @property
    def content_type(self) -> str:
        if self is SoapVersion.V11:
            return "text/xml; charset=utf-8"
        return "application/soap+xml; charset=utf-8"

    @staticmethod
    def from_content_type(media_type: str) -> SoapVersion:
        """SOAP 1.2 is `application/soap+xml`; everything else is read as SOAP 1.1."""
        return SoapVersion.V12 if media_type.lower() == "application/soap+xml" else SoapVersion.V11


@dataclass(frozen=True)
class SoapFault:
    """How one §5 error looks as a SOAP fault."""

    name: ErrorName
    code: int
    side: str  # "Client" | "Server" (SOAP 1.1 naming)
    retry: bool

    @property
    def faultcode11(self) -> str:
        """The SOAP 1.1 faultcode text, prefix `soap` bound to the 1.1 envelope namespace."""
        return f"soap:{self.side}.{self.name.value}"

    @property
    def code12(self) -> str:
        """The SOAP 1.2 Code/Value text (Subcode carries `tns:NAME`)."""
        return "soap:Sender" if self.side == "Client" else "soap:Receiver"

    def http_status(self, version: SoapVersion) -> int:
        if self.name is ErrorName.AUTH_FAILED:
            return 401
        if version is SoapVersion.V12 and self.side == "Client":
            return 400
        return 500


SOAP_FAULTS: Mapping[ErrorName, SoapFault] = MappingProxyType({
    name: SoapFault(name, spec.code, spec.soap_fault, spec.retry)
    for name, spec in ERROR_TABLE.items()
    if spec.soap_fault  # SUCCESS has none
})

_MAX_REASON = 300


def _reason(fault: SoapFault, message: str) -> str:
    base = ERROR_TABLE[fault.name].smtp.text
    text = f"{base}: {message}" if message else base
    # One line, bounded, printable: whatever produced `message`, it cannot smuggle a traceback.
    text = "".join(c for c in " ".join(text.split()) if c.isprintable())
    return text[:_MAX_REASON]


def render_fault(version: SoapVersion, name: ErrorName, message: str = "") -> bytes:
    """A complete SOAP envelope carrying the fault for `name`."""
    fault = SOAP_FAULTS[name]
    reason = escape(_reason(fault, message))
    detail = (f"<tns:error><tns:name>{fault.name.value}</tns:name><tns:code>{fault.code}</tns:code>"
              f"<tns:retry>{'true' if fault.retry else 'false'}</tns:retry></tns:error>")
    if version is SoapVersion.V11:
        body = (f"<soap:Fault><faultcode>{fault.faultcode11}</faultcode>"
                f"<faultstring>{reason}</faultstring><detail>{detail}</detail></soap:Fault>")
    else:
        body = (f"<soap:Fault><soap:Code><soap:Value>{fault.code12}</soap:Value>"
                f"<soap:Subcode><soap:Value>tns:{fault.name.value}</soap:Value></soap:Subcode>"
                f"</soap:Code><soap:Reason><soap:Text xml:lang=\"en\">{reason}</soap:Text>"
                f"</soap:Reason><soap:Detail>{detail}</soap:Detail></soap:Fault>")
    return (f"<?xml version='1.0' encoding='UTF-8'?>\n"
            f"<soap:Envelope xmlns:soap=\"{version.envelope_ns}\" xmlns:tns=\"{TNS}\">"
            f"<soap:Body>{body}</soap:Body></soap:Envelope>").encode()
