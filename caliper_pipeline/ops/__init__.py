"""An operator's actions on a running pipeline: topics, purge, replay, renormalize, erasure."""
