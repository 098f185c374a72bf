"""eventweir's I/O and wiring, in layers (see README.md, "Layout"): a module imports only its own
layer or lower: config, metrics -> kafka -> targets -> runtime -> http -> service, cli, devtools."""
from streams import legacy

legacy.install()
