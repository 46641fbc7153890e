"""The metrics shipper: discover, scrape, relabel, batch as remote write, produce."""
