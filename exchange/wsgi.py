"""WSGI entry point for production: `gunicorn exchange.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
application = get_wsgi_application()
