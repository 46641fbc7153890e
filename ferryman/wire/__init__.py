"""Wire formats written from their published specs: protobuf basics, Prometheus
remote write 1.0, Loki push, and snappy block framing."""
