#!/usr/bin/env python3
"""Draws icon.png (128x128) and logo.png (250x100) with zlib and struct only.

    python3 addon/make_images.py [OUT_DIR]

A rounded teal tile with a white house outline and a rising history line; the logo adds the
tile beside three bars. Deterministic: re-running gives the same bytes.
"""

import struct
import sys
import zlib
from pathlib import Path

TEAL = (3, 169, 164)
DARK = (2, 110, 120)
WHITE = (255, 255, 255)
AMBER = (255, 193, 7)


def png(width, height, pixel):
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            rows.extend(pixel(x, y))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b""))


def seg_dist(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / float(dx * dx + dy * dy)))
    cx, cy = ax + t * dx, ay + t * dy
    return ((px - cx) ** 2 + (py - cy) ** 2) ** 0.5


def near(px, py, points, width):
    return any(seg_dist(px, py, *points[i], *points[i + 1]) <= width
               for i in range(len(points) - 1))


def tile(x, y, size, ox=0, oy=0):
    """Pixel of the icon tile at (x, y) relative to its origin, or None outside it."""
    u, v = x - ox, y - oy
    if not (0 <= u < size and 0 <= v < size):
        return None
    r = size * 0.2
    cx = min(max(u, r), size - 1 - r)
    cy = min(max(v, r), size - 1 - r)
    if (u - cx) ** 2 + (v - cy) ** 2 > r * r:
        return None
    s = size / 128.0
    house = [(30, 64), (64, 32), (98, 64), (98, 100), (30, 100), (30, 64)]
    history = [(40, 90), (54, 78), (66, 84), (88, 60)]
    if near(u / s, v / s, history, 4.5):
        return AMBER + (255,)
    if near(u / s, v / s, house, 5.0):
        return WHITE + (255,)
    mix = v / size
    return tuple(int(TEAL[i] * (1 - mix) + DARK[i] * mix) for i in range(3)) + (255,)


def icon(x, y):
    return tile(x, y, 128) or (0, 0, 0, 0)


def logo(x, y):
    p = tile(x, y, 90, 5, 5)
    if p:
        return p
    # three rising bars: history growing
    for i, (bx, h) in enumerate(((120, 30), (160, 50), (200, 70))):
        if bx <= x < bx + 28 and 90 - h <= y < 90:
            return (TEAL if i < 2 else DARK) + (255,)
    return (0, 0, 0, 0)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    (out / "icon.png").write_bytes(png(128, 128, icon))
    (out / "logo.png").write_bytes(png(250, 100, logo))
    print(f"wrote {out / 'icon.png'} and {out / 'logo.png'}")


if __name__ == "__main__":
    main()
