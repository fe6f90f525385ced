"""The HTTP side of the ASGI application: /healthz for load balancers."""

from __future__ import annotations

import json
import urllib.request

import pytest
from django.test import Client

from tests.support import GatewayServer


def test_healthz_over_http_returns_ok(gateway_server: GatewayServer) -> None:
    with urllib.request.urlopen(gateway_server.http_url + "/healthz", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert json.loads(response.read()) == {"ok": True}


@pytest.mark.django_db
def test_healthz_in_process() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_healthz_needs_no_auth_and_reveals_nothing(gateway_server: GatewayServer) -> None:
    with urllib.request.urlopen(gateway_server.http_url + "/healthz", timeout=10) as response:
        body = response.read().decode()
    assert gateway_server.token not in body and str(gateway_server.state_dir) not in body
