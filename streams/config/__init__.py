"""The whole config surface: the models (model.py), errors (errors.py), each target's own settings (targets.py) and the
generated reference (reference.py). `from streams.config import Config, load_config` is the API."""
from streams.config.errors import ConfigError, describe_error  # noqa: F401
from streams.config.model import *  # noqa: F403
