"""Fail when a JUnit report shows that no test ran (an empty or fully skipped run is not a pass)."""

import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()  # noqa: S314
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
total = sum(int(s.get("tests", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
print(f"{sys.argv[1]}: {total} tests, {total - skipped - failed} passed, {skipped} skipped, {failed} failed")
if total - skipped == 0 or failed:
    sys.exit(1)
