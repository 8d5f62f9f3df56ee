"""Helpers of the detection-quality evaluation, ``bench.evaluate``."""
