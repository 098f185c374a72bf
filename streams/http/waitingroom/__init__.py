"""The waiting room over HTTP: the public API, the lean server in front of it, and the page."""
