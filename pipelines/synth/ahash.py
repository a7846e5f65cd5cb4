"""A dependency-free average hash, matching ``imagehash.average_hash`` (hash_size 8) as NLVR2 uses it.

NLVR2 ships ``{split}_hashes.json`` (image file name -> hash) so that crawled images can be checked;
the synthetic release carries the same files, computed here. The algorithm, as in imagehash 4.x:
convert to 8-bit greyscale ("L"), resize to 8x8 with Lanczos (PIL's former ANTIALIAS), threshold each
pixel against the mean of the 64 pixels (strictly greater -> 1), read the bits row-major, most
significant first, and print them as 16 lower-case hex digits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def average_hash(img: Image.Image, hash_size: int = 8) -> str:
    small = img.convert("L").resize((hash_size, hash_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    bits = (pixels > pixels.mean()).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    width = (hash_size * hash_size + 3) // 4
    return f"{value:0{width}x}"


def hamming(a: str, b: str) -> int:
    """Bit distance between two hex hashes (imagehash's ``h1 - h2``)."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
