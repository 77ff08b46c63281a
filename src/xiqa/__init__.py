"""xiqa: explainable image-quality analysis of chest X-rays."""

__version__ = "0.1.0"
