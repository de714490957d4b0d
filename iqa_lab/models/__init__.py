"""LightningModules, one per architecture, all built on ``IQAModule``."""
