"""The InfluxDB target (also Timestream for InfluxDB) and its line-protocol encoder."""
