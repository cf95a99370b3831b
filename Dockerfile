# The exchange's image: the web process, the worker and the operator commands (README, "Running in containers").
# Built from the repository alone: `docker build -t bad-actor-exchange .`
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python -m venv /opt/venv
# Dependencies first (a layer that changes only with the lock), at the versions CI tested.
COPY pyproject.toml README.md requirements.lock ./
RUN /opt/venv/bin/pip install --requirement requirements.lock
COPY manage.py gunicorn_config.py LICENSE ./
COPY accounts ./accounts
COPY exchange ./exchange
COPY graph ./graph
COPY fixtures ./fixtures
COPY templates ./templates
RUN /opt/venv/bin/pip install --no-deps --constraint requirements.lock . \
    && DEBUG=1 /opt/venv/bin/python manage.py collectstatic --noinput

FROM python:3.12-slim-bookworm
# WeasyPrint (the referral package's PDF) draws text with Pango and HarfBuzz and needs a font; pinned to
# bookworm's versions, like requirements.lock pins the Python side.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends \
        libpango-1.0-0=1.50.12+ds-1 \
        libpangoft2-1.0-0=1.50.12+ds-1 \
        libharfbuzz-subset0=6.0.0+dfsg-3 \
        fonts-dejavu-core=2.37-6 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin exchange
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GUNICORN_BIND=0.0.0.0:8000 \
    GUNICORN_CONTROL_DIR=/tmp/gunicorn \
    NUMBA_CACHE_DIR=/tmp/numba-cache
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["gunicorn", "-c", "gunicorn_config.py", "exchange.wsgi"]
