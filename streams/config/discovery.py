"""A bus's `discovery:` section: infer the JSON Schema of each (source, detail-type) flowing on it
(the inference is processors/discovery.py, the registry topic streams/runtime/discovery.py; README
"Schema discovery")."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from processors.discovery import Discovery, Limits


class DiscoverySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Infer and version the schemas of this bus's events.")
    topic: str = Field(
        "eventweir.schemas.discovered", pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="The compacted registry topic (key: source/detail-type, value: its versions), shared by every "
        "worker; `eventweir schemas discovered` reads it. Made with one partition if missing.")
    sample_first: int = Field(10, ge=0, description="Events of a new type that are all inferred.")
    sample_every: int = Field(100, ge=1, description="After those, one event of the type in this many is inferred.")
    max_types: int = Field(1000, ge=1, description="Types a worker keeps, and the registry takes (no new type once it "
                                                   "holds that many); events of others are counted in "
                                                   "eventweir_discovery_overflow_events_total and not inferred.")
    max_properties: int = Field(100, ge=1, description="Properties kept per object; the schema allows the others "
                                                       "unnamed (the object is marked x-eventweir-capped).")
    max_depth: int = Field(8, ge=1, description="Nesting kept; deeper values are any value.")
    max_fields: int = Field(1000, ge=1, description="Properties kept per schema, all levels together.")
    max_versions: int = Field(20, ge=1, description="Versions kept per type, the oldest dropped (also while a type's record "
                              "would pass 900 KB); numbers never repeat.")
    flush_interval_s: float = Field(5.0, gt=0, description="How often new versions are written to the registry topic.")

    def limits(self) -> Limits:
        return Limits(self.max_properties, self.max_depth, self.max_fields)

    def stage(self) -> Discovery:
        return Discovery(self.limits(), self.sample_first, self.sample_every, self.max_types)
