"""The built-in data: offline source recordings (``sources``), the class vocabulary, the soundscape mixer and
the toy generator used by tests."""
