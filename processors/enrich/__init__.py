"""Enrichment stages. Stateful ones keep a `PartitionedState` (see state.py) as `.state`."""
from processors.enrich.cdc import CdcDeduplicator, Scd2History, change_hash
from processors.enrich.geoip import CidrTable, IpEnricher, truncate_ip
from processors.enrich.iot import DerivedFields, DeviceOrderCheck, ThresholdAlerts, UnitNormaliser, heat_index_c
from processors.enrich.lookup import HttpLookup
from processors.enrich.reference import ReferenceJoin, ReferenceTable
from processors.enrich.sessions import Sessioniser
from processors.enrich.state import PartitionedState
from processors.enrich.useragent import UserAgentEnricher, parse_user_agent

__all__ = ["CdcDeduplicator", "Scd2History", "change_hash", "CidrTable", "IpEnricher", "truncate_ip",
           "DerivedFields", "DeviceOrderCheck", "ThresholdAlerts", "UnitNormaliser", "heat_index_c",
           "HttpLookup", "ReferenceJoin", "ReferenceTable", "Sessioniser", "PartitionedState", "UserAgentEnricher",
           "parse_user_agent"]
