"""Simulated senders: sample payloads, the traffic mix, ``loadgen`` and ``up --demo``."""
