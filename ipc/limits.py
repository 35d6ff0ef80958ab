"""Limits both sides of the pipe enforce, kept in one place so they can never disagree."""

# 50 megapixels: a 7000 x 7000 scan fits, a decompression bomb (30000 x 30000) does not.
# The supervisor refuses larger images from their header, the engine again when it decodes.
MAX_IMAGE_PIXELS = 50_000_000
