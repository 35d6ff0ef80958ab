"""The two transformers configs that match the PP-OCRv6-small ONNX graphs shipped in rapidocr."""

from __future__ import annotations

from transformers import PPLCNetV4Config, PPOCRV6SmallDetConfig, PPOCRV6SmallRecConfig

# (kernel, in, out, stride, squeeze-excitation) per block, one list per stage.
_DET_BLOCKS = [
    [[3, 48, 48, 1, True], [3, 48, 48, 1, False]],
    [[3, 48, 96, 2, False], [3, 96, 96, 1, True], [3, 96, 96, 1, False]],
    [
        [3, 96, 192, 2, False],
        [3, 192, 192, 1, True],
        [3, 192, 192, 1, False],
        [3, 192, 192, 1, True],
        [3, 192, 192, 1, False],
    ],
    [[3, 192, 384, 2, False], [3, 384, 384, 1, True], [3, 384, 384, 1, False]],
]

NUM_CLASSES = 18710  # 18,708 dictionary characters + CTC blank + the appended space
REC_FINAL_NORM_EPS = 1e-6  # the encoder's last LayerNorm; its blocks use the config's 1e-5


def det_config() -> PPOCRV6SmallDetConfig:
    backbone = PPLCNetV4Config(
        stem_channels=[3, 24, 48],
        block_configs=_DET_BLOCKS,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return PPOCRV6SmallDetConfig(backbone_config=backbone, layer_list_out_channels=[48, 96, 192, 384])


def rec_config() -> PPOCRV6SmallRecConfig:
    return PPOCRV6SmallRecConfig(head_out_channels=NUM_CLASSES, layer_norm_eps=1e-5)
