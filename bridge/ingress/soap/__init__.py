"""SOAP ingress (SPEC §6 SOAP): the only package that imports Spyne and aiohttp-spyne.

- `service`  — the contract: Spyne types and operations (async), compiled request decoder and
               response encoder, `Operations` (the typed glue to `bridge.intake.service.Service`);
- `app`      — `create_soap_app(service, config, metrics)`: the aiohttp app
               (POST {path} and {path}12, GET ?wsdl);
- `security` — hardened XML parsing, HTTP Basic, WS-Security UsernameToken;
- `faults`   — the one table from §5 errors to SOAP 1.1/1.2 faults;
- `wsdl`     — deterministic WSDL rendering, `check_wsdl` / `write_wsdl` for `wsdl/`;
"""
