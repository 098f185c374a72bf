"""Old module paths (before the layered layout) still import, as the same module objects, with a
DeprecationWarning naming the new path: users' faust apps and scripts keep working for one release."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from streams.legacy import MOVED


@pytest.mark.parametrize("old", sorted(set(MOVED) - {"streams.sinks"}))  # a package: see the last test
def test_each_old_path_is_the_new_module(old):
    new = importlib.import_module(MOVED[old])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop(old, None)
        assert importlib.import_module(old) is new
    assert f"{old} moved to {MOVED[old]}" in [str(w.message).split(";")[0] for w in caught
                                              if w.category is DeprecationWarning]


def test_a_users_faust_app_written_against_the_old_paths_still_imports():
    script = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
              "try:\n    from streams.faust_runtime import EventweirProcessor\nexcept DeprecationWarning as w:\n"
              "    print(w)\n"
              "import warnings; warnings.simplefilter('ignore')\n"
              "from streams.faust_runtime import EventweirProcessor\n"
              "from streams.sinks.s3 import S3Target\nfrom streams.worker import Worker\n"
              "from streams.runtime.faust import EventweirProcessor as New\nassert EventweirProcessor is New\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "streams.faust_runtime moved to streams.runtime.faust" in out and out.strip().endswith("ok")


def test_old_submodule_imports_leave_the_new_packages_intact():
    script = ("import warnings; warnings.simplefilter('ignore')\n"
              "import streams.sinks.s3, streams.sinks.influxdb, streams.sinks.layout\n"
              "import streams.targets.s3.layout, streams.targets.influxdb.lineprotocol\n"
              "import streams.targets\n"
              "assert streams.targets.s3.layout is streams.sinks.layout\n"
              "assert streams.targets.influxdb.lineprotocol.__name__ == 'streams.targets.influxdb.lineprotocol'\n"
              "from streams.sinks import base\nfrom streams.targets import base as new\nassert base is new\nprint('ok')")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout == "ok\n"
