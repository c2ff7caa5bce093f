"""Policy gates: the compliance packs, the project's own SageMaker rules, and acknowledgments."""
