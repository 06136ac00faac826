"""Deterministic WSDL documents, checked in under `wsdl/` and served at `GET {path}?wsdl`.

Built from the same Spyne Applications that serve requests (Spyne's Wsdl11 interface
document), then sorted (the order of spyne/test/sort_wsdl.py: top-level elements by kind then
name, schema children by kind then name, operations by name) and pretty-printed, so the output
does not depend on dict or class registration order. The checked-in files use a placeholder
address; the served documents carry the address the client used.
"""

from __future__ import annotations

from typing import Any

from pathlib import Path

from lxml import etree

from bridge.ingress.soap.faults import SoapVersion

PLACEHOLDER_URL = "http://localhost:8080/soap"
FILES = {SoapVersion.V11: "sms-bridge-soap11.wsdl", SoapVersion.V12: "sms-bridge-soap12.wsdl"}

_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_XS = "http://www.w3.org/2001/XMLSchema"
_TOP_ORDER = {f"{{{_WSDL}}}{n}": i for i, n in
              enumerate(("documentation", "types", "message", "portType", "binding", "service"))}
_SCHEMA_ORDER = {f"{{{_XS}}}{n}": i for i, n in
                 enumerate(("import", "element", "simpleType", "complexType", "attribute"))}
_OPERATION_HOLDERS = {f"{{{_WSDL}}}portType", f"{{{_WSDL}}}binding"}


def endpoint_url(base: str, version: SoapVersion) -> str:
    """SOAP 1.2 lives at `{path}12` (see bridge.ingress.soap.app)."""
    return base + "12" if version is SoapVersion.V12 else base


def render_wsdl(version: SoapVersion | str, url: str = PLACEHOLDER_URL) -> bytes:
    """The WSDL for one SOAP version; `url` is the SOAP 1.1 endpoint ({path})."""
    from bridge.ingress.soap.service import build_application

    version = SoapVersion(version)
    from spyne.interface.wsdl import Wsdl11

    app = build_application(version, validate=False)
    document = Wsdl11(app.interface)
    document.build_interface_document(endpoint_url(url, version))
    raw: bytes = document.get_interface_document()
    return _normalise(raw)


def _normalise(raw: bytes) -> bytes:
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    root = etree.fromstring(raw, parser)
    _sort(root)
    rendered: bytes = etree.tostring(root, pretty_print=True, xml_declaration=True,
                                     encoding="UTF-8")
    return rendered


def _reorder(parent: etree._Element, key: Any) -> None:
    children = list(parent)
    for child in children:
        parent.remove(child)
    children.sort(key=key)
    parent.extend(children)


def _sort(root: etree._Element) -> None:
    _reorder(root, lambda e: (_TOP_ORDER.get(e.tag, 99), e.get("name", "")))
    for holder in root:
        if holder.tag in _OPERATION_HOLDERS:
            # the soap:binding element (no name) first, then operations by name
            _reorder(holder, lambda e: (e.get("name") is not None, e.get("name", "")))
        elif holder.tag == f"{{{_WSDL}}}types":
            _reorder(holder, lambda e: e.get("targetNamespace", ""))
            for schema in holder:
                _reorder(schema, lambda e: (_SCHEMA_ORDER.get(e.tag, 99), e.get("name", "")))


def check_wsdl(directory: Path | str) -> list[str]:
    """Problems (empty = in sync) between the rendered WSDL and the files in `directory`."""
    problems = []
    for version, name in FILES.items():
        path = Path(directory) / name
        if not path.exists():
            problems.append(f"{path}: missing (run `sms-bridge wsdl --write`)")
            continue
        if path.read_bytes() != render_wsdl(version):
            problems.append(f"{path}: differs from the service definition "
                            "(run `sms-bridge wsdl --write`)")
    return problems


def write_wsdl(directory: Path | str) -> list[Path]:
    """(Re)write both WSDL files; returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for version, name in FILES.items():
        path = out / name
        path.write_bytes(render_wsdl(version))
        written.append(path)
    return written
