"""One local Spark session for the whole test run (starting one costs seconds): the Spark engine's tests in
tests/graph/core (the labeller against SciPy's) and tests/graph (both engines on the fixtures) share it.

Without PySpark these tests fail, they do not skip (a run that skipped them passed without testing the Spark
engine): `make test` installs the spark extra. Skipping is a choice one states, with EXCHANGE_SKIP_SPARK_TESTS=1.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

SKIP_ASKED = os.environ.get("EXCHANGE_SKIP_SPARK_TESTS", "") not in {"", "0"}


def require_pyspark(installed: bool, skip_asked: bool) -> None:
    if installed:
        return
    if skip_asked:
        pytest.skip("EXCHANGE_SKIP_SPARK_TESTS is set and PySpark is not installed")
    pytest.fail(
        "the Spark engine's tests need PySpark: pip install '.[spark]' (`make test` installs it), or "
        "EXCHANGE_SKIP_SPARK_TESTS=1 to skip them knowingly"
    )


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    require_pyspark(importlib.util.find_spec("pyspark") is not None, SKIP_ASKED)
    from graph.linking.spark import spark_session

    # Two local cores (the machine's) and the engine's own local defaults: what `--engine spark` runs with.
    with spark_session("local[2]") as session:
        yield session
