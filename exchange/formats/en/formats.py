"""English pages with ISO dates: "2026-03-16 13:55" rather than "March 16, 2026, 1:55 p.m.", which no one outside
the US reads first and which, unbreakable in a change-list cell, pushed the lists' last column out of view. The
cluster page and the report emails already write dates this way."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
