"""ASGI entry point (e.g. `uvicorn exchange.asgi:application`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
application = get_asgi_application()
