"""The gateway: remote write, Loki push and OTLP from any agent, with tenants, into Kafka."""
