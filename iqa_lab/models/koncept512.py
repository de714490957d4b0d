"""``model=koncept512``: KonCept512, the KonIQ-10k authors' regressor (Hosu, Lin, Sziranyi &
Saupe, IEEE TIP 2020): InceptionResNetV2 on the whole image resized to 512×384 → global average
pooling → FC 2048 → FC 1024 → FC 256 → FC 1.

Head as the authors' code builds it (github.com/subpic/koniq, ``fc_layers(fc_sizes=[2048, 1024,
256, 1], dropout_rates=[0.25, 0.25, 0.5, 0], batch_norm=2)``): each hidden layer is a ReLU dense
layer, then BatchNorm, then dropout 0.25 / 0.25 / 0.5; the output is linear
(``nn.heads.DenseBNHead`` with ``order=relu_bn``). MSE loss, Adam at 1e-4 (the notebook's first
stage; its second, at 1e-5, is a further run with ``model.init_from``).

Weights: the paper starts from ImageNet weights (Keras). timm's ``inception_resnet_v2`` has the
same architecture, but no weights ship offline: ``model.backbone.pretrained=false`` (the default
here) trains it from random initialisation; ``pretrained=true`` fetches timm's hub weights where
reachable, or ``model.backbone.checkpoint=<state dict>``. The offline ImageNet lite0
(``model.backbone.name=tf_efficientnet_lite0 model.backbone.pretrained=true``) is a pretrained
stand-in on the same head, not KonCept512.
"""

from __future__ import annotations

from iqa_lab.models.baseline import BaselineIQA


class KonCept512(BaselineIQA):
    """The baseline's backbone → pooling → head, with the authors' dense-BatchNorm head."""

    default_head = "dense_bn"  # nn.heads.DenseBNHead
