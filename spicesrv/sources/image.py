"""
A display source that shows a still picture from a file.
"""

import io

import numpy as np
from zope.interface import implementer

from spicesrv.interfaces import IMigratableState
from spicesrv.sources.base import FramebufferSource
from spicesrv.sources.picture import loadPicture


def _bgrx(picture):
    """
    Return an RGB Pillow image as a (height, width, 4) BGRX numpy array.
    """
    rgb = np.asarray(picture)
    frame = np.empty(rgb.shape[:2] + (4,), np.uint8)
    frame[..., :3] = rgb[..., ::-1]
    frame[..., 3] = 255
    return frame


@implementer(IMigratableState)
class ImageSource(FramebufferSource):
    """
    Shows the picture in the file at C{path}, which any format Pillow
    opens may hold.  A missing or unreadable file, or a picture beyond
    L{spicesrv.sources.picture.MAX_PICTURE_SIDE} or
    L{spicesrv.sources.picture.MAX_PICTURE_PIXELS}, raises L{ValueError}
    (so does such a picture in migrated state).
    """

    migration_key = "display.image"

    def __init__(self, path):
        picture = loadPicture(path, path)
        FramebufferSource.__init__(self, *picture.size)
        self.description = "picture %s" % (path,)
        self._show(picture)

    def _show(self, picture):
        self._picture = picture
        self.setFrame(_bgrx(picture))

    # IMigratableState

    def get_migration_state(self):
        png = io.BytesIO()
        self._picture.save(png, "PNG")
        return png.getvalue()

    def set_migration_state(self, data):
        self._show(loadPicture(io.BytesIO(data), "the migrated picture"))
