"""Service discovery shared by the metrics and the logs shipper, as Prometheus keeps
``discovery/`` apart from scrape: static and file SD (:mod:`.files`) and Kubernetes
list+watch for every role (:mod:`.kubernetes`). A discoverer yields
:class:`~edge.discovery.group.TargetGroup` s; what a shipper makes of them (scrape
targets, log paths) is its own business."""
