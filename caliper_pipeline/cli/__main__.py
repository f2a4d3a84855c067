"""``python -m caliper_pipeline.cli``: the console script ``caliper-pipeline``."""

from caliper_pipeline.cli import main

raise SystemExit(main())
