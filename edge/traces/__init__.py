"""The OTLP traces receiver: OTLP/gRPC and OTLP/HTTP into Kafka, one trace per message."""
