"""The pipeline on one machine: the local Kafka (a broker or a cluster, or the configured one: ``kafka_choice``), the
stack ``up`` runs and supervises, ``LocalPipeline``."""
