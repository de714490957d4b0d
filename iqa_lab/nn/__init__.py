"""Building blocks shared by the architectures: backbones, heads."""
