"""Export of readings and instrument status to InfluxDB (v2 write API, influxdb-client).

The relational store is the record of truth; InfluxDB is a view for dashboards. So the
exporter never makes ingest wait: it takes rows into a bounded queue and, when InfluxDB is
slow or down, drops the overflow and counts it (see influx.InfluxExporter).
"""
