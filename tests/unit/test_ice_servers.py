"""TURN REST credentials and URLs (pure logic; coturn accepting them is tested in
tests/integration/test_turn_relay.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from controlplane.media.ice_servers import IceServers, TurnConfig

SECRET = "a-shared-secret-of-coturn"


def test_no_turn_server_means_no_ice_servers() -> None:
    assert IceServers(None).for_participant("pt-1") == []
    assert IceServers(TurnConfig((), SECRET)).for_participant("pt-1") == []


def test_credentials_expire_after_the_ttl_and_are_the_hmac_of_the_username() -> None:
    servers = IceServers(TurnConfig(("turn.example.org",), SECRET, ttl=600), clock=lambda: 1000.5)
    [server] = servers.for_participant("pt-1")
    expiry, tag = server["username"].split(":")
    assert expiry == "1600"
    assert "pt-1" not in tag and len(tag) == 16
    digest = hmac.new(SECRET.encode(), server["username"].encode(), hashlib.sha1).digest()
    assert server["credential"] == base64.b64encode(digest).decode()
    # The same participant gets the same tag; another one a different tag.
    assert servers.for_participant("pt-1")[0]["username"] == server["username"]
    assert servers.for_participant("pt-2")[0]["username"] != server["username"]


def test_urls_udp_tcp_and_turns_only_when_a_tls_port_is_set() -> None:
    plain = TurnConfig(("turn.example.org", "2001:db8::7"), SECRET)
    assert plain.urls() == [
        "turn:turn.example.org:3478?transport=udp",
        "turn:turn.example.org:3478?transport=tcp",
        "turn:[2001:db8::7]:3478?transport=udp",
        "turn:[2001:db8::7]:3478?transport=tcp",
    ]
    tls = TurnConfig(("turn.example.org",), SECRET, tls_port=443)
    assert tls.urls()[-1] == "turns:turn.example.org:443?transport=tcp"
