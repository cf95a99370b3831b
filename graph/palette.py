"""The colours every server-drawn picture shares (the cluster picture, the interactive graph, the timeline and the
transparency report's charts). Pure: no Django, so the pure chart code can use them too.

Two palettes that cannot be mistaken for each other: platforms (seller circles) are dark, kinds (indicator
diamonds and squares) are light, so a seller never looks like an indicator even where hues are close
(tests/graph/test_network.py checks them).
"""

from __future__ import annotations

PLATFORM_COLOURS = ("#1d4e89", "#0b6e4f", "#6a3d9a", "#8c2d04", "#00646e", "#7b2c5e", "#3d3d3d", "#4a5d0b")
KIND_COLOURS = {
    "email": "#ff8a80",
    "phone": "#ffd166",
    "tax_id": "#c9b3ff",
    "business_registration": "#b8c4d6",
    "bank_account": "#86e08a",
    "payment_account": "#8fd3fe",
    "crypto_wallet": "#ffb3de",
    "store_name": "#a0ece8",
    "website_domain": "#dce775",
    "shipping_address": "#ffcc99",
    "return_address": "#f5e6b8",
    "device_id": "#e0e0e0",
}
UNKNOWN_KIND_COLOUR = "#eeeeee"
BRIDGE = "#c0392b"
