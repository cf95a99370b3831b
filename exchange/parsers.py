"""The API's request parser: DRF's JSON parser, refusing input nested too deeply for the decoder with a 400.

Python's JSON decoder recurses once per nesting level, so 100,000 `[` raise RecursionError, which is not a
ValueError and got past DRF's parser as a 500.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

NESTED_TOO_DEEPLY = "JSON parse error - nested too deeply"


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(NESTED_TOO_DEEPLY) from None
