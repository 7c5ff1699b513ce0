"""
A display source that shows a still picture from a file.
"""

import io

import numpy as np
from PIL import Image
from zope.interface import implementer

from spicesrv.display.arrow import arrow_cursor
from spicesrv.interfaces import IDisplaySource, IMigratableState


def _load(source, name):
    """
    Open a picture with Pillow and return it as RGB, or raise L{ValueError}
    naming C{name}.
    """
    try:
        with Image.open(source) as picture:
            return picture.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ValueError(
            "cannot show %s as a picture (%s): give the path of an image "
            "file Pillow can read, such as a PNG or JPEG" % (name, reason))


def _bgrx(picture):
    """
    Return an RGB Pillow image as a (height, width, 4) BGRX numpy array.
    """
    rgb = np.asarray(picture)
    frame = np.empty(rgb.shape[:2] + (4,), np.uint8)
    frame[..., :3] = rgb[..., ::-1]
    frame[..., 3] = 255
    return frame


@implementer(IDisplaySource, IMigratableState)
class ImageSource:
    """
    Shows the picture in the file at C{path}, which any format Pillow
    opens may hold.  A missing or unreadable file raises L{ValueError}.
    """

    type = IDisplaySource.getTaggedValue("type")
    major_version = IDisplaySource.getTaggedValue("major_version")
    minor_version = IDisplaySource.getTaggedValue("minor_version")
    migration_key = "display.image"

    def __init__(self, path):
        self.description = "picture %s" % (path,)
        self._observers = []
        self._cursor = arrow_cursor()
        self._show(_load(path, path))

    def devices(self):
        """
        Return everything to register with the server: this source.
        """
        return [self]

    def _show(self, picture):
        self._picture = picture
        self._frame = _bgrx(picture)
        self.width, self.height = picture.size

    # IDisplaySource

    def framebuffer(self):
        return self._frame

    def cursor(self):
        return self._cursor

    def cursor_position(self):
        return (self.width // 2, self.height // 2)

    def addObserver(self, observer):
        self._observers.append(observer)

    def removeObserver(self, observer):
        self._observers.remove(observer)

    # IMigratableState

    def get_migration_state(self):
        png = io.BytesIO()
        self._picture.save(png, "PNG")
        return png.getvalue()

    def set_migration_state(self, data):
        old_size = (self.width, self.height)
        self._show(_load(io.BytesIO(data), "the migrated picture"))
        for observer in list(self._observers):
            if (self.width, self.height) != old_size:
                observer.surface_changed(self.width, self.height)
            else:
                observer.damaged([(0, 0, self.width, self.height)])
