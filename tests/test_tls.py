"""One TLS helper for every listener and the SMPP links (bridge.ingress.tls): files a config
names are relative to its base_dir, whatever the working directory; a file that cannot be
loaded is a config problem naming its key."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme

from bridge.config import ConfigError, SmscConfig
from bridge.ingress.tls import client_context, config_path, server_context
from bridge.runtime.outbound import smpp_tls
from tests.conftest import make_config, running_bridge


def _certificate(folder: Path) -> trustme.CA:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder.mkdir(parents=True, exist_ok=True)
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return ca


def test_a_relative_path_is_under_base_dir_and_an_absolute_one_is_kept(tmp_path: Path) -> None:
    assert config_path(tmp_path, "tls/cert.pem") == tmp_path / "tls" / "cert.pem"
    assert config_path(tmp_path, "/etc/ssl/x.pem") == Path("/etc/ssl/x.pem")


def test_server_and_client_contexts_load_relative_files_from_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _certificate(tmp_path / "tls")
    monkeypatch.chdir("/")  # not the base_dir: the rule must not depend on it
    context = server_context(tmp_path, "tls/cert.pem", "tls/key.pem", section="http")
    assert isinstance(context, ssl.SSLContext)
    client = client_context(tmp_path, "tls/ca.pem", verify_hostname=False, key="smsc[0].tls_ca")
    assert client.check_hostname is False and client.verify_mode is ssl.CERT_REQUIRED
    assert server_context(tmp_path, None, None, section="http") is None


def test_a_missing_file_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        server_context(tmp_path, "nope.pem", "nope.key", section="soap")
    assert caught.value.problems[0].startswith("soap.tls_cert: cannot load the certificate")
    with pytest.raises(ConfigError) as caught:
        smpp_tls(tmp_path, SmscConfig(name="a", tls=True, tls_ca="missing-ca.pem"), 2)
    assert caught.value.problems[0].startswith("smsc[2].tls_ca: cannot load the CA file")
    assert smpp_tls(tmp_path, SmscConfig(name="a"), 0) is None


async def test_the_soap_listener_finds_a_relative_certificate_under_base_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the SOAP listener read its files relative to the working directory and SMTP
    relative to base_dir; now both go by base_dir."""
    _certificate(tmp_path / "tls")
    monkeypatch.chdir(os.path.dirname(tmp_path))
    config = make_config(tmp_path, soap={"tls_cert": "tls/cert.pem", "tls_key": "tls/key.pem"})
    async with running_bridge(config) as bridge:
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{bridge.soap_port}/healthz",
                                ssl=context) as response:
                assert response.status == 200
