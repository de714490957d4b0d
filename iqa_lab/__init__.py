"""iqa_lab: an experiment platform for blind image quality assessment research."""

__version__ = "0.1.0"
