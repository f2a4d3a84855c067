"""Hypothesis profiles of the test suite, chosen by the ``HYPOTHESIS_PROFILE`` environment variable:

- ``ci`` (the default, what ``make test`` and CI run): 300 examples per property;
- ``dev`` (``make test-fast``): 15 examples per property, so a run of the fast loop stays short.

A property test states how many examples it needs relative to the active profile with ``examples(scale)``
instead of a fixed count, so the dev profile shortens every property test and CI keeps each one's full count.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("dev", max_examples=15, deadline=None)

# the scales the property tests use, by why a test needs more or fewer examples than the profile's count
EXPENSIVE = 0.5  # each example runs a whole normalizer or gateway pipeline: half the count
WIDE = 2.0  # damaged input: the damage multiplies the input space, twice the count
BRANCHES = 5.0  # the compiler's every branch: nested documents of every shape, five times the count


def load_profile() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (``ci`` when unset); an unknown name is an error."""
    name = os.environ.get(PROFILE_ENV) or "ci"
    settings.load_profile(name)
    return name


def examples(scale: float = 1.0) -> int:
    """The active profile's ``max_examples`` times ``scale``, at least 1."""
    return max(1, round(settings().max_examples * scale))
