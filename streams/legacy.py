"""Old import paths (before the layered layout of 0.2) keep working for one release.

`import streams.worker` still gives the worker module, now at streams.runtime.worker, with a
DeprecationWarning naming the new path. The old module name is an alias of the new module (the
same object), so patching either patches both. Remove this module in the release after 0.2.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

# old name -> new name
MOVED = {
    "streams.config_reference": "streams.config.reference",
    "streams.sinks.settings": "streams.config.targets",
    "streams.metrics_waitingroom": "streams.metrics.waitingroom",
    "streams.admin": "streams.kafka.admin",
    "streams.kafka_read": "streams.kafka.read",
    "streams.producer": "streams.kafka.producer",
    "streams.changelog": "streams.kafka.changelog",
    "streams.tables": "streams.kafka.tables",
    "streams.fetch_records": "streams.kafka.fastpath.fetch_records",
    "streams.produce_request": "streams.kafka.fastpath.produce_request",
    "streams.sinks": "streams.targets",
    "streams.sinks.base": "streams.targets.base",
    "streams.sinks.http": "streams.targets.http",
    "streams.sinks.kafka": "streams.targets.kafka",
    "streams.sinks.log": "streams.targets.log",
    "streams.sinks.waitingroom": "streams.targets.waitingroom",
    "streams.sinks.timestream": "streams.targets.timestream",
    "streams.sinks.retry": "streams.targets.backoff",
    "streams.retry": "streams.targets.retry",
    "streams.deadletter": "streams.targets.deadletter",
    "streams.sinks.s3": "streams.targets.s3.target",
    "streams.sinks.layout": "streams.targets.s3.layout",
    "streams.sinks.formats": "streams.targets.s3.formats",
    "streams.sinks.objectstore": "streams.targets.s3.objectstore",
    "streams.sinks.ddl": "streams.targets.s3.ddl",
    "streams.sinks.influxdb": "streams.targets.influxdb.target",
    "streams.sinks.lineprotocol": "streams.targets.influxdb.lineprotocol",
    "streams.worker": "streams.runtime.worker",
    "streams.topology": "streams.runtime.topology",
    "streams.enrichment": "streams.runtime.enrichment",
    "streams.lookups": "streams.runtime.http_fetcher",
    "streams.watermarks": "streams.runtime.offsets",
    "streams.control": "streams.runtime.reload",
    "streams.eventloop": "streams.runtime.eventloop",
    "streams.faust_runtime": "streams.runtime.faust",
    "streams.eventbridge_api": "streams.http.eventbridge.api",
    "streams.sigv4": "streams.http.eventbridge.sigv4",
    "streams.waitingroom_api": "streams.http.waitingroom.api",
    "streams.waitingroom_http": "streams.http.waitingroom.server",
    "streams.waitingroom_page": "streams.http.waitingroom.page",
    "streams.cmd_run": "streams.cli.run",
    "streams.cmd_demo": "streams.cli.demo",
    "streams.cmd_publish": "streams.cli.publish",
    "streams.cmd_test_pattern": "streams.cli.test_pattern",
    "streams.cmd_schemas": "streams.cli.schemas",
    "streams.cmd_waitingroom": "streams.cli.waitingroom",
    "streams.cmd_lake": "streams.cli.lake",
    "streams.cmd_dlq": "streams.cli.dlq",
    "streams.demo": "streams.devtools.demo",
    "streams.generator": "streams.devtools.generator",
    "streams.broker": "streams.devtools.broker",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there (the old path goes in the next "
                      "release)", DeprecationWarning, stacklevel=3)
        if spec.submodule_search_locations is not None:
            # an old package (streams.sinks) is a namespace of its own whose submodules this finder
            # maps: importing them sets attributes on it, never on the new package
            package = ModuleType(spec.name, f"Moved to {self.new}.")
            package.__path__ = []
            return package
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The module was executed under its new name."""


class _MovedModules(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        is_package = new == "streams.targets"
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new), is_package=is_package)


def install() -> None:
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())  # before the path finder, which would load a second copy
