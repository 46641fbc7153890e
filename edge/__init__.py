"""Edge shippers: scrape metrics and tail logs in a cluster or on a host, produce to Kafka."""
