"""Date formats for the pages (`FORMAT_MODULE_PATH`): ISO dates, which every member's analysts read alike."""
