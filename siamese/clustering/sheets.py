"""Contact sheets: many face crops in one image, so a person can check a group at a glance.

All images are (H, W, 3) uint8 RGB. Text is drawn with OpenCV's Hershey font (ASCII only).
"""

from __future__ import annotations

import cv2
import numpy as np

TILE = 112         # px, each crop is shown at this size
CAPTION = 14       # px of caption under each tile
HEADER = 28        # px of title above a sheet
BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float = 0.4, thick: int = 1) -> None:
    cv2.putText(img, text.encode("ascii", "replace").decode(), (x, y), cv2.FONT_HERSHEY_SIMPLEX,
                scale, INK, thick, cv2.LINE_AA)


def _tile(crop: np.ndarray) -> np.ndarray:
    if crop.shape[:2] == (TILE, TILE):
        return crop
    interp = cv2.INTER_AREA if crop.shape[0] > TILE else cv2.INTER_LINEAR
    return cv2.resize(crop, (TILE, TILE), interpolation=interp)


def contact_sheet(tiles: list[tuple[np.ndarray, str]], title: str, columns: int = 10,
                  max_tiles: int = 200, total: int | None = None) -> np.ndarray:
    """A grid of crops with a caption under each and a title on top.

    Args:
        tiles: (crop (S, S, 3) uint8 RGB, caption) pairs, in display order.
        title: drawn above the grid (e.g. "person_001: 12").
        columns: tiles per row.
        max_tiles: show at most this many; the title then says how many were left out.
        total: how many crops the group has, when `tiles` holds only the first few.

    Returns:
        (H, W, 3) uint8 RGB image; an empty `tiles` gives a title-only sheet.
    """
    shown = tiles[:max_tiles]
    if max(len(tiles), total or 0) > len(shown):
        title += f" (first {len(shown)} shown)"
    cols = max(1, min(columns, len(shown)))
    rows = -(-len(shown) // cols)
    cell_h = TILE + CAPTION
    sheet = np.full((HEADER + rows * cell_h, max(cols * TILE, 320), 3), BACKGROUND, np.uint8)
    _text(sheet, title, 6, 19, 0.55, 1)
    for n, (crop, caption) in enumerate(shown):
        r, c = divmod(n, cols)
        y, x = HEADER + r * cell_h, c * TILE
        sheet[y:y + TILE, x:x + TILE] = _tile(crop)
        _text(sheet, caption[:18], x + 3, y + TILE + 11, 0.35)
    return sheet


def overview(groups: dict[str, tuple[str, list[tuple[np.ndarray, str]]]], per_row: int = 8,
             max_rows: int = 100) -> np.ndarray:
    """One row per group: its name and size, then its first `per_row` crops.

    Args:
        groups: name -> (a line under the name such as "12 faces", (crop, caption) pairs most
            typical first); rows keep the dict's order.
        per_row: crops shown per group.
        max_rows: groups drawn; a last line says how many more there are.

    Returns:
        (H, W, 3) uint8 RGB image; no groups gives a small "no faces found" image.
    """
    label_w = 150
    names = list(groups)[:max_rows]
    extra = len(groups) - len(names)
    height = max(1, len(names)) * (TILE + 4) + (24 if extra else 0)
    img = np.full((height, label_w + per_row * TILE, 3), BACKGROUND, np.uint8)
    if not names:
        _text(img, "no faces found", 8, TILE // 2, 0.6)
    for r, name in enumerate(names):
        y = r * (TILE + 4)
        _text(img, name, 6, y + TILE // 2 - 4, 0.5)
        note, tiles = groups[name]
        _text(img, note, 6, y + TILE // 2 + 16, 0.4)
        for c, (crop, _) in enumerate(tiles[:per_row]):
            img[y:y + TILE, label_w + c * TILE:label_w + (c + 1) * TILE] = _tile(crop)
    if extra:
        _text(img, f"... and {extra} more groups (see the person folders)", 6, height - 8, 0.5)
    return img
