"""ASGI entry point: WebSocket on every path (the dialect follows the path: /v3 speaks v3,
everything else the root dialect), HTTP for /admin/ and /healthz.

Works under plain `daphne anima_site.asgi:application`; `python manage.py gateway serve`
starts daphne with the options the gateway needs (README)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anima_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_http = get_asgi_application()

from gateway.asgi_app import build_application  # noqa: E402
from gateway.runtime import GatewayRuntime  # noqa: E402

runtime = GatewayRuntime()
application = build_application(runtime, django_http)
