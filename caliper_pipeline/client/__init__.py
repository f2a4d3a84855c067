"""Clients of the pipeline's HTTP APIs: the sink's SQL endpoint, the jobs' receipts."""
