"""The SOAP listener over TLS (bridge/app.py builds the context from [soap] tls_cert/tls_key)."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from tests.conftest import make_config, running_bridge
from tests.soap import NUMBER, call, client


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_soap_over_tls(tmp_path: Path, version: str) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    config = make_config(tmp_path, soap={"tls_cert": str(cert_path), "tls_key": str(key_path)})
    async with running_bridge(config) as bridge:
        c = await client(bridge.soap_port, version, scheme="https", verify=str(ca_path))
        result = await call(c, "SendSms", recipients=[NUMBER], text="over TLS")
        assert result[0].status == "accepted"
        await bridge.simulator.wait_for_submits(1, 5.0)
        # the served WSDL points clients at https
        context = ssl.create_default_context(cafile=str(ca_path))
        async with aiohttp.ClientSession() as http:
            url = f"https://127.0.0.1:{bridge.soap_port}/soap?wsdl"
            async with http.get(url, ssl=context) as response:
                assert f'location="https://127.0.0.1:{bridge.soap_port}/soap"' in (
                    await response.text())
            # plain HTTP to the TLS port does not get an answer
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{bridge.soap_port}/healthz") as response:
                    await response.read()
