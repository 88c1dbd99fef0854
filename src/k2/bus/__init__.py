"""The bus of the cluster shape: feed processes publish to Kafka, ingest workers consume into the
hot store (docs/CLUSTER.md). The embedded shape does not use it."""
