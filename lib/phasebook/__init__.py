"""Phasebook: a bilingual executable book about how large language models are trained."""

__version__ = "0.1.0"
