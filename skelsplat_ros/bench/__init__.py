"""Benchmarks around the product (``skelsplat bench``): never imported by the node or by ``skelsplat fuse``."""
