"""`python -m streams.cli`: the same as the `eventweir` command."""
import sys

from streams.cli import main

sys.exit(main())
