"""
Deterministic pictures for the stills tests and benchmark: text, UI and
photograph-like (L{spicesrv.sources.motion.scrollPicture}), as BGRX
framebuffers or Pillow images; and how close two pictures are (L{psnr}).
"""

import numpy
from PIL import Image, ImageDraw

from spicesrv.sources.motion import scrollPicture


def psnr(a, b):
    """
    The peak signal-to-noise ratio (dB) of picture C{a} against C{b}, on
    their first three channels (a BGRX framebuffer's X is not compared);
    infinite when they are equal.
    """
    mse = numpy.mean((a[..., :3].astype(numpy.float64) - b[..., :3]) ** 2)
    return float("inf") if mse == 0 else 10 * numpy.log10(255.0 ** 2 / mse)


def bgrx(image):
    """
    A Pillow image as a C{(height, width, 4)} BGRX array.
    """
    rgb = numpy.asarray(image.convert("RGB"))
    frame = numpy.empty(rgb.shape[:2] + (4,), numpy.uint8)
    frame[..., :3] = rgb[..., ::-1]
    frame[..., 3] = 255
    return frame


def rgbImage(frame):
    """
    A BGRX array as a Pillow RGB image.
    """
    return Image.fromarray(numpy.ascontiguousarray(frame[..., 2::-1]), "RGB")


def textPicture(width=800, height=300, background=(255, 255, 255)):
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for line in range(height // 22):
        draw.text((10, 6 + 22 * line), "The quick brown fox jumps over the lazy dog. "
                  "0123456789 " * 4, fill=(0, 0, 0))
    return bgrx(image)


def uiPicture(width=800, height=300):
    """
    A title bar with a gradient, rows of buttons with labels, a framed text
    area: a desktop application's window.
    """
    image = Image.new("RGB", (width, height), (236, 236, 236))
    draw = ImageDraw.Draw(image)
    for x in range(width):
        draw.line([(x, 0), (x, 28)], fill=(40 + x * 80 // max(1, width), 80, 160))
    for row in range(max(1, (height - 32) // 120)):
        for i in range(width // 120):
            left, top = 20 + i * 120, 32 + row * 120
            draw.rectangle((left, top, left + 100, top + 28), fill=(250, 250, 250),
                           outline=(90, 90, 90))
            draw.text((left + 12, top + 8), "Button %d" % (i + row,), fill=(0, 0, 0))
            for line in range(3):
                draw.text((left, top + 40 + 16 * line), "label %d.%d" % (row, line),
                          fill=(30, 30, 30))
    return bgrx(image)


def photoPicture(width, height):
    """
    A photograph-like picture (smooth colour, soft blobs, fine grain).
    """
    return scrollPicture(width, height)


def mixedPicture(width, height):
    """
    UI and text on the left half, a photograph on the right half (its left
    edge on a multiple of 64 pixels).
    """
    half = (width // 2) // 64 * 64
    left = numpy.concatenate([uiPicture(half, height // 2),
                              textPicture(half, height - height // 2)], axis=0)
    return numpy.concatenate([left, photoPicture(width - half, height)], axis=1)
