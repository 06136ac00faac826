"""Config: every problem is reported with its key path; secrets from env; the shipped config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import ConfigError, effective_smscs, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent

BASE = {"simulator": {"enabled": True},
        "account": [{"name": "a", "password": "p"}]}


def problems(data: dict[str, object], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env or {})
    return info.value.problems


def test_shipped_config_is_valid_and_uses_the_simulator() -> None:
    config = load_config(ROOT / "conf" / "bridge.toml")
    assert config.simulator.enabled
    assert effective_smscs(config)[0].port == config.simulator.port
    assert config.store.url.startswith("sqlite:///")


@pytest.mark.parametrize(("data", "expected"), [
    ({"smsc": [{"name": "x", "window": 0}]}, "smsc[0].window: must be 1..1000"),
    ({"smsc": [{"name": "x"}, {"name": "y", "window": 5000}]}, "smsc[1].window: must be 1..1000"),
    ({"smsc": [{"name": "x", "bind": "rx"}]}, 'smsc[0].bind: must be one of "transceiver"'),
    ({"smsc": [{"name": "x", "prefixes": ["44"]}]}, "smsc[0].prefixes[0]: must be \"+\""),
    ({"smtp": {"listen": "nohost"}}, 'smtp.listen: must be "host:port"'),
    ({"smtp": {"subject": "top"}}, "smtp.subject: must be one of"),
    ({"smtp": {"max_recipients": "ten"}}, "smtp.max_recipients: must be an integer, got str"),
    ({"smtp": {"lmtp": 1}}, "smtp.lmtp: must be a boolean, got int"),
    ({"soap": {"path": "soap"}}, 'soap.path: must start with "/"'),
    ({"soap": {"callbacks": "yes"}}, "soap.callbacks: must be a boolean, got str"),
    ({"soap": {"callback_timeout_s": 0}}, "soap.callback_timeout_s: must be 0.1..300"),
    ({"soap": {"callback_max_attempts": 0}}, "soap.callback_max_attempts: must be 1..100"),
    ({"soap": {"callback_retry_base_s": 60, "callback_retry_max_s": 30}},
     "soap.callback_retry_max_s: must not be less than callback_retry_base_s"),
    ({"smtp": {"smarthost": "relay.example"}}, 'smtp.smarthost: must be "host:port"'),
    ({"smtp": {"smarthost": "relay.example:0"}}, 'smtp.smarthost: must be "host:port"'),
    ({"smtp": {"smarthost": ":25", "smarthost_user": "u", "smarthost_password": "p"}},
     'smtp.smarthost: must be "host:port"'),
    ({"smtp": {"smarthost_tls": "ssl"}}, 'smtp.smarthost_tls: must be one of "none"'),
    ({"smtp": {"notify_default": "ALWAYS"}}, 'smtp.notify_default: must be "NEVER" or'),
    ({"smtp": {"notify_default": "NEVER,FAILURE"}}, "smtp.notify_default: must be"),
    ({"smtp": {"report_from": "postmaster"}}, "smtp.report_from: must be a mail address"),
    ({"smtp": {"smarthost": "relay.example:25", "smarthost_user": "u"}},
     "smtp.smarthost_password: smarthost_user and smarthost_password go together"),
    ({"smtp": {"smarthost": "relay.example:587", "smarthost_user": "u",
               "smarthost_password": "p"}},
     "smtp.smarthost_tls: a password goes to a smarthost beyond loopback only over TLS"),
    ({"smtp": {"mail_retry_base_s": 60, "mail_retry_max_s": 30}},
     "smtp.mail_retry_max_s: must not be less than mail_retry_base_s"),
    ({"store": {"url": "mysql://x"}}, "store.url: must be"),
    ({"account": [{"name": "a", "password": "p", "callback_secret": "short"}]},
     "account[0].callback_secret: must be at least 16 characters"),
    ({"store": {"retention_days": -1}}, "store.retention_days: must be 0..36500"),
    ({"simulator": {"enabled": True, "reply_every": -1}}, "simulator.reply_every: must be 0.."),
    ({"simulator": {"enabled": True, "error_status": 0}},
     "simulator.error_status: must be 0x1..0xFFFFFFFF"),
    ({"simulator": {"enabled": True, "reply_text": ""}},
     "simulator.reply_text: must be 1..1000 characters"),
    ({"policy": {"max_parts": 0}}, "policy.max_parts: must be 1..255"),
    ({"policy": {"auto_encodings": ["gsm7"]}}, "policy.auto_encodings: must include \"ucs2\""),
    ({"account": [{"name": "a", "password": "p", "default_region": "gb"}]},
     "account[0].default_region: must be an ISO 3166"),
    ({"account": [{"name": "a", "password": "p", "default_region": "XX"}]},
     "account[0].default_region: must be an ISO 3166 alpha-2 region libphonenumber knows"),
    ({"account": [{"name": "a", "password": "p", "senders": ["ACME", "TOOLONGSENDERID"]}]},
     'account[0].senders[1]: "TOOLONGSENDERID" is not a valid sender id: alphanumeric'),
    ({"account": [{"name": "a", "password": "p", "senders": ["+44"]}]},
     'account[0].senders[0]: "+44" is not a valid sender id: international number too short'),
    ({"account": [{"name": "a", "password": "p", "default_sender": "A€B"}]},
     'account[0].default_sender: "A€B" is not a valid sender id: contains'),
    ({"account": [{"name": "a", "password": "p", "relay_networks": ["10.0.0.0/33"]}]},
     "account[0].relay_networks[0]:"),
    ({"account": [{"name": "a"}]}, "account[0]: needs password, password_hash or relay_networks"),
    ({"account": [{"name": "a", "password": "p", "callback_hosts": ["ok.example", "x.example:80"]}]},
     'account[0].callback_hosts[1]: "x.example:80" is not a host name pattern'),
    ({"account": [{"name": "a", "password": "p"}, {"name": "a", "password": "q"}]},
     'account[1].name: duplicate name "a"'),
    ({"smtp": {"colour": "red"}}, "smtp.colour: unknown key"),
    ({"store": {"commit_interval_ms": 2}}, "store.commit_interval_ms: unknown key"),
    ({"smsc": [{"name": "x", "encodings": ["gsm7"]}]},
     'smsc[0].encodings: must include "ucs2"'),
    ({"smsc": [{"name": "x", "encodings": ["gsm7", "ucs2", "utf8"]}]},
     'smsc[0].encodings[2]: must be one of'),
    ({"smsc": [{"name": "x", "weight": -1}]}, "smsc[0].weight: must be 0.."),
    ({"smsc": [{"name": "x", "breaker_failure_rate": 1.5}]},
     "smsc[0].breaker_failure_rate: must be 0..1"),
    ({"smsc": [{"name": "x"}], "account": [{"name": "a", "password": "p", "smscs": ["y"]}]},
     'account[0].smscs: no [[smsc]] named "y"'),
    ({"bogus": {}}, "bogus: unknown section"),
    ({"store": {"pool_size": 4}}, "store.pool_size: must be 5.."),
    ({"http": {"listen": "x"}}, 'http.listen: must be "host:port"'),
    ({"http": {"json_path": "api"}}, 'http.json_path: must be "" (off) or a path'),
    ({"http": {"kannel_path": "/a?b"}}, "http.kannel_path: must be"),
    ({"http": {"kannel_path": "/send"}}, "http.jasmin_path: each dialect needs a path of its own"),
    ({"http": {"bulksms_path": "/soap"}}, 'http.bulksms_path: a dialect path equals [soap] path'),
    ({"http": {"tls_cert": "c.pem", "tls_key": "k.pem"}}, "http.tls_cert: needs listen"),
    ({"http": {"listen": "127.0.0.1:0", "tls_cert": "c.pem"}},
     "http.tls_key: tls_cert and tls_key go together"),
    ({"http": {"require_tls": True}}, "http.require_tls: needs [soap] tls_cert and tls_key"),
    ({"http": {"listen": "127.0.0.1:0", "require_tls": True}},
     "http.require_tls: needs tls_cert and tls_key"),
    ({"http": {"max_request_bytes": 10}}, "http.max_request_bytes: must be 1024.."),
    ({"http": {"report_retry_base_s": 60, "report_retry_max_s": 30}},
     "http.report_retry_max_s: must not be less than report_retry_base_s"),
    ({"http": {"paths": {}}}, "http.paths: unknown key"),
    ({"account": [{"name": "a", "password": "p", "api_tokens": ["my-token"]}]},
     "account[0].api_tokens[0]: must be a hash like password_hash"),
    ({"account": [{"name": "a", "password": "p", "dlr_url": "ftp://x/y"}]},
     "account[0].dlr_url: dlr_url must be an http(s) URL"),
    ({"account": [{"name": "a", "password": "p", "mo_url": "http://h/x y"}]},
     "account[0].mo_url: mo_url must not contain spaces"),
    # A newcomer's typos: a dotted host that is no address, a name with a stray character,
    # a key or a section one letter off.
    ({"smtp": {"listen": "999.1.1.1:2536"}},
     'smtp.listen: the host is not an IP address, got "999.1.1.1:2536"'),
    ({"soap": {"listen": "[::zz]:80"}}, "soap.listen: the host is not an IP address"),
    ({"soap": {"listen": "bad_host!:80"}}, "soap.listen: the host is not a host name"),
    ({"smtp": {"max_recipents": 5}},
     'smtp.max_recipents: unknown key (did you mean "max_recipients"?)'),
    ({"simulater": {}}, 'simulater: unknown section (did you mean "simulator"?)'),
    ({"smtp": {"zzz": 1}}, "smtp.zzz: unknown key"),
])
def test_problems_name_their_key_path(data: dict[str, object], expected: str) -> None:
    merged = {**BASE, **data}
    found = problems(merged)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:2525", "0.0.0.0:25", ":25",
                                    "localhost:25", "mx-1.example.org:25"])
def test_listen_takes_addresses_and_host_names(listen: str) -> None:
    assert parse_config({**BASE, "smtp": {"listen": listen}}).smtp.listen_port >= 0


def test_a_config_without_any_account_is_refused() -> None:
    assert problems({"simulator": {"enabled": True}}) == [
        "account: no [[account]]: nothing could be sent or received (conf/README.md shows one)"]


def test_the_config_path_comes_from_sms_bridge_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without -c the config is $SMS_BRIDGE_CONFIG, else conf/bridge.toml of the working
    folder; a missing one says how to name another."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMS_BRIDGE_CONFIG", raising=False)
    assert main(["check-config"]) == 1
    assert "conf/bridge.toml: cannot read (No such file or directory); name the config with " \
        "-c FILE or SMS_BRIDGE_CONFIG" in capsys.readouterr().err
    monkeypatch.setenv("SMS_BRIDGE_CONFIG", str(ROOT / "conf" / "bridge.toml"))
    assert main(["check-config"]) == 0
    assert f"{ROOT / 'conf' / 'bridge.toml'}: ok" in capsys.readouterr().out
def test_smscs_of_different_forms_and_accounts_with_their_own_routes() -> None:
    config = parse_config({**BASE, "smsc": [
        {"name": "udh", "prefixes": ["+44"], "weight": 2},
        {"name": "sar", "concat": "sar", "encodings": ["gsm7", "ucs2"], "weight": 1,
         "breaker_failure_rate": 0, "breaker_cooldown_s": 5}],
        "account": [{"name": "a", "password": "p", "smscs": ["sar", "udh"]}]})
    udh, sar = config.smsc
    assert (udh.concat, sar.concat, sar.encodings) == ("udh8", "sar", ("gsm7", "ucs2"))
    assert (udh.weight, sar.weight, sar.breaker_failure_rate, sar.breaker_cooldown_s) == \
        (2, 1, 0.0, 5.0)
    assert udh.encodings == ("gsm7", "latin1", "ucs2") and udh.breaker_min_submits == 10
    assert config.accounts[0].smscs == ("sar", "udh")


def test_every_problem_is_reported_at_once() -> None:
    found = problems({**BASE, "smtp": {"max_recipients": 0, "subject": "x"},
                      "smsc": [{"name": "s", "window": 0, "port": 0}]})
    assert len(found) == 4, found


def test_secret_from_environment_and_never_echoed() -> None:
    data = {**BASE, "smsc": [{"name": "s", "password": {"env": "SMSC_PW"}}]}
    config = parse_config(data, env={"SMSC_PW": "hunter2"})
    assert config.smsc[0].password == "hunter2"
    assert "hunter2" not in repr(config)
    found = problems(data, env={})
    assert found == ["smsc[0].password: environment variable SMSC_PW is not set"]


def test_mail_back_keys() -> None:
    config = parse_config({**BASE, "smtp": {
        "domains": ["sms.acme.example"], "smarthost": "[::1]:2525", "smarthost_user": "bridge",
        "smarthost_password": {"env": "RELAY_PW"}, "notify_default": "never"}},
        env={"RELAY_PW": "s3cret"})
    smtp = config.smtp
    assert (smtp.mail_back, smtp.smarthost_address) == (True, ("::1", 2525))
    assert smtp.report_address == "MAILER-DAEMON@sms.acme.example"
    assert smtp.smarthost_password == "s3cret" and "s3cret" not in repr(config)
    assert parse_config(BASE).smtp.mail_back is False  # no smarthost: no mail goes back


def test_http_keys() -> None:
    from bridge.intake.credentials import hash_password

    shared = parse_config(BASE).http
    assert shared.shared and shared.kannel_path == "/cgi-bin/sendsms"
    token = hash_password("t0ken", iterations=1000)
    config = parse_config({**BASE, "http": {"listen": "127.0.0.1:8081", "jasmin_path": ""},
                           "account": [{"name": "a", "password": "p", "api_tokens": [token],
                                        "dlr_url": "https://hooks.example/dlr",
                                        "mo_url": "http://127.0.0.1:9/mo"}]})
    assert (config.http.shared, config.http.listen_port, config.http.jasmin_path) == \
        (False, 8081, "")
    account = config.accounts[0]
    assert account.api_tokens == (token,) and token not in repr(config)
    assert (account.dlr_url, account.mo_url) == ("https://hooks.example/dlr",
                                                 "http://127.0.0.1:9/mo")


def test_admin_keys() -> None:
    from bridge.intake.credentials import hash_password

    assert parse_config(BASE).admin.users == ()  # no console unless someone may log in
    stored = hash_password("pw", iterations=1000)
    config = parse_config({**BASE, "admin": {
        "users": [{"name": "ops", "password_hash": {"env": "OPS_HASH"}}],
        "show_numbers": True, "listen": "127.0.0.1:8090"}}, env={"OPS_HASH": stored})
    admin = config.admin
    assert admin.password_hashes() == {"ops": stored} and stored not in repr(config)
    assert (admin.show_numbers, admin.listen_host, admin.listen_port) == (True, "127.0.0.1", 8090)
    found = problems({**BASE, "admin": {
        "users": [{"name": "ops"}, {"name": "ops:x", "password_hash": "hunter2"},
                  {"name": "b", "password_hash": stored, "role": "root"}],
        "show_numbers": "yes", "tls_cert": "c.pem"}})
    assert found == [
        "admin.users[0].password_hash: is required (sms-bridge passwd makes one)",
        'admin.users[1].name: must be 1..64 characters, without ":"',
        "admin.users[1].password_hash: must be a hash from sms-bridge passwd "
        "(pbkdf2_sha256$iterations$salt_hex$hash_hex)",
        "admin.users[2].role: unknown key",
        "admin.show_numbers: must be a boolean, got str",
        "admin.tls_key: tls_cert and tls_key go together",
        "admin.tls_cert: needs listen: on the [soap] listener the [soap] certificate serves"]
    assert "hunter2" not in "".join(found)
    assert problems({**BASE, "admin": {"users": "ops"}}) == [
        'admin.users: must be a list of tables like { name = "ops", password_hash = "…" }']


def test_no_upstream_at_all_is_refused() -> None:
    found = problems({"account": [{"name": "a", "password": "p"}]})
    assert found == ["smsc: at least one [[smsc]] is required unless [simulator] is enabled"]


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(ROOT / "conf" / "bridge.toml")]) == 0
    first, store = capsys.readouterr().out.splitlines()
    assert first.endswith(": ok (1 account(s), embedded simulator as SMSC(s), no mail back "
                          "(no [smtp] smarthost))")
    assert store.startswith("store: SQLite ") and "schema version" in store
    relay = tmp_path / "relay.toml"
    relay.write_text((ROOT / "conf" / "bridge.toml").read_text().replace(
        '# smarthost = "127.0.0.1:25"', 'smarthost = "127.0.0.1:25"').replace(
        '[store]\n', '[store]\nretention_days = 30\n'))
    assert main(["check-config", "-c", str(relay)]) == 0
    assert "mail back via 127.0.0.1:25, messages kept 30 day(s))\n" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[smtp]\nmax_recipients = 0\n[[smsc]]\nname = "x"\nwindow = 0\n')
    assert main(["check-config", "-c", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "config error: smtp.max_recipients: must be 1..10000" in err
    assert "config error: smsc[0].window: must be 1..1000" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[smtp\n")
    assert main(["check-config", "-c", str(broken)]) == 1
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["check-config", "-c", str(tmp_path / "missing.toml")]) == 1


def test_check_config_connects_to_postgresql_and_shows_its_schema(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A PostgreSQL store is connected to and its schema version shown, without migrating;
    one that cannot be reached fails the check (exit 1), and no password is printed."""
    import asyncio

    from bridge.store import PostgresStore
    from bridge.store.pg_schema import LATEST_VERSION
    from tests.conftest import closed_port

    text = (ROOT / "conf" / "bridge.toml").read_text()
    config = tmp_path / "pg.toml"
    config.write_text(text.replace('url = "sqlite:///var/bridge.db"', f'url = "{pg_url}"'))
    assert main(["check-config", "-c", str(config)]) == 0
    assert f"schema version 0 (this bridge: {LATEST_VERSION})" in capsys.readouterr().out

    async def migrate() -> None:
        store = PostgresStore(pg_url)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    assert main(["check-config", "-c", str(config)]) == 0
    assert f"schema version {LATEST_VERSION} (this bridge: {LATEST_VERSION})" \
        in capsys.readouterr().out
    gone = tmp_path / "gone.toml"
    gone.write_text(text.replace(
        'url = "sqlite:///var/bridge.db"',
        f'url = "postgresql://bridge@127.0.0.1:{closed_port()}/db"\npassword = "s3cret-pw"'))
    assert main(["check-config", "-c", str(gone)]) == 1
    out, err = capsys.readouterr()
    assert "store: cannot connect to postgresql://bridge@127.0.0.1:" in err
    assert "s3cret-pw" not in out + err
