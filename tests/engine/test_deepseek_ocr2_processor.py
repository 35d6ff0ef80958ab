"""transformers' PIL processor against DeepSeek's own preprocessing, at the real sizes (1024 / 768).

The reference below restates ``DeepseekOCR2Processor.tokenize_with_images`` and ``dynamic_preprocess``
from deepseek-ai/DeepSeek-OCR-2 (``DeepSeek-OCR2-vllm/process/image_process.py``; config.py:
BASE_SIZE 1024, IMAGE_SIZE 768, CROP_MODE True, MIN_CROPS 2, MAX_CROPS 6) with numpy in place of
torchvision's ``ToTensor`` + ``Normalize(0.5, 0.5)`` (the same arithmetic: x / 255, then (x - 0.5) / 0.5).
The adapter preprocesses with transformers' classes, its global view placed as upstream places it
(``engine.models.deepseek_ocr2.preprocess``); this holds them to upstream's tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageOps
from transformers import DeepseekOcr2ImageProcessorPil, DeepseekOcr2Processor

from engine.models.deepseek_ocr2.preprocess import UpstreamImageProcessor
from tests.tiny_deepseek import tiny_tokenizer

BASE_SIZE, IMAGE_SIZE, MIN_CROPS, MAX_CROPS, PATCH, DOWNSAMPLE = 1024, 768, 2, 6, 16, 4
SIZES = [
    (64, 48), (300, 200), (768, 768), (769, 200), (1024, 1024), (1200, 800), (800, 1200), (1654, 2339),
    (2339, 1654), (3000, 500), (500, 3000), (1000, 999), (1537, 770), (2480, 3508), (900, 1700),
]  # fmt: skip


def _closest_ratio(aspect: float, ratios: list[tuple[int, int]], width: int, height: int) -> tuple[int, int]:
    best_diff, best = float("inf"), (1, 1)
    area = width * height
    for ratio in ratios:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * IMAGE_SIZE * IMAGE_SIZE * ratio[0] * ratio[1]:
            best = ratio
    return best


def _dynamic_preprocess(image: Image.Image) -> tuple[list[Image.Image], tuple[int, int]]:
    width, height = image.size
    ratios = {
        (i, j)
        for n in range(MIN_CROPS, MAX_CROPS + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if MIN_CROPS <= i * j <= MAX_CROPS
    }
    grid = _closest_ratio(width / height, sorted(ratios, key=lambda r: r[0] * r[1]), width, height)
    target_w, target_h = IMAGE_SIZE * grid[0], IMAGE_SIZE * grid[1]
    resized = image.resize((target_w, target_h))
    columns = target_w // IMAGE_SIZE
    tiles = []
    for i in range(grid[0] * grid[1]):
        x, y = (i % columns) * IMAGE_SIZE, (i // columns) * IMAGE_SIZE
        tiles.append(resized.crop((x, y, x + IMAGE_SIZE, y + IMAGE_SIZE)))
    return tiles, grid


def _to_tensor(image: Image.Image) -> np.ndarray:
    x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    return (x - np.float32(0.5)) / np.float32(0.5)


def official(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int], int]:
    """Global view, local tiles, tile grid and image-token count as upstream makes them."""
    if image.size[0] <= IMAGE_SIZE and image.size[1] <= IMAGE_SIZE:
        tiles, grid = [], (1, 1)
    else:
        tiles, grid = _dynamic_preprocess(image)
    global_view = ImageOps.pad(image, (BASE_SIZE, BASE_SIZE), color=tuple(int(x * 255) for x in (0.5, 0.5, 0.5)))
    queries = math.ceil((IMAGE_SIZE // PATCH) / DOWNSAMPLE)
    queries_base = math.ceil((BASE_SIZE // PATCH) / DOWNSAMPLE)
    tokens = queries_base * queries_base + 1
    if grid[0] > 1 or grid[1] > 1:
        tokens += (queries * grid[0]) * (queries * grid[1])
    local = np.stack([_to_tensor(t) for t in tiles]) if tiles else None
    return _to_tensor(global_view)[None], local, grid, tokens


@pytest.fixture(scope="module")
def processor() -> DeepseekOcr2Processor:
    return DeepseekOcr2Processor(image_processor=UpstreamImageProcessor(), tokenizer=tiny_tokenizer())


def _page(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(width * 10007 + height)
    pixels = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(pixels).resize((width, height), Image.Resampling.NEAREST)  # blocky, with edges


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_transformers_processor_gives_upstreams_tensors(processor, width: int, height: int) -> None:
    image = _page(width, height)
    global_view, local, grid, tokens = official(image)
    ours = processor(images=image, text="<image>\nFree OCR.", return_tensors="np")
    assert (ours["input_ids"][0] == processor.image_token_id).sum() == tokens
    assert int(ours["num_local_patches"][0]) == (0 if local is None else grid[0] * grid[1])
    np.testing.assert_allclose(ours["pixel_values"], global_view, rtol=0, atol=1e-6)
    if local is None:
        assert "pixel_values_local" not in ours
    else:
        np.testing.assert_allclose(ours["pixel_values_local"], local, rtol=0, atol=1e-6)


def test_stock_transformers_centres_some_global_views_one_pixel_off() -> None:
    """Why UpstreamImageProcessor exists; when this fails, transformers agrees with upstream and it can go."""
    image = _page(1537, 770)  # resized to 1024 x 513: 511 rows of padding, upstream puts 256 above
    stock = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tiny_tokenizer())
    global_view = official(image)[0]
    ours = stock(images=image, text="<image>\nFree OCR.", return_tensors="np")["pixel_values"]
    assert not np.allclose(ours, global_view, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[:, :, 255:768], global_view[:, :, 256:769], rtol=0, atol=1e-6)
