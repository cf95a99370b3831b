"""Tests of graph/ with Django: clusters, their API and admin, reports, the demo command."""
