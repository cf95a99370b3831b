"""``python -m exchange.client``: the reference partner client's command line."""

from exchange.client.cli import main

raise SystemExit(main())
