"""Skeleton models: joint sets, bones, left/right pairs, as data (``data/skeletons.yaml`` or a user YAML file)."""
