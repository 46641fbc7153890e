"""The edge log shipper: tail files and pod logs, batch lines, produce to Kafka."""
