"""
Opening pictures from files and from migrated state with bounded memory.

A picture's file can be tiny and still claim a huge size (a PNG of a few
kilobytes can describe 30,000 x 30,000 pixels of one colour): decoding it
would take gigabytes, and showing it would take as much again per client.
The size in the file's header is checked against L{MAX_PICTURE_SIDE} and
L{MAX_PICTURE_PIXELS} before any pixel is decoded.
"""

import warnings

from PIL import Image

#: The widest or tallest picture a source accepts, in pixels.
MAX_PICTURE_SIDE = 8192

#: The most pixels a picture a source accepts may have (8K UHD, 7680 x
#: 4320: about 133 MB as the 32-bit framebuffer the clients are sent).
MAX_PICTURE_PIXELS = 7680 * 4320


class PictureTooLarge(ValueError):
    """
    A picture beyond L{MAX_PICTURE_SIDE} or L{MAX_PICTURE_PIXELS}.
    """


def checkPictureSize(width, height, name):
    """
    Raise L{PictureTooLarge} naming C{name} if a C{width} x C{height}
    picture is beyond the limits.
    """
    if (width > MAX_PICTURE_SIDE or height > MAX_PICTURE_SIDE
            or width * height > MAX_PICTURE_PIXELS):
        raise PictureTooLarge(
            "%s is %dx%d pixels; pictures may be at most %d pixels wide or tall and "
            "%d pixels in all" % (name, width, height, MAX_PICTURE_SIDE, MAX_PICTURE_PIXELS))


def loadPicture(source, name):
    """
    Open a picture with Pillow, check its size from its header, then decode
    it as RGB.

    @param source: a path or a binary file object.
    @param name: how to name the picture in an error.
    @raise ValueError: naming C{name}, for an unreadable picture or one
        beyond the limits.
    """
    try:
        with warnings.catch_warnings():
            # Our own limit applies below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as picture:
                checkPictureSize(picture.width, picture.height, name)
                return picture.convert("RGB")
    except PictureTooLarge:
        raise
    except Image.DecompressionBombError as e:
        raise PictureTooLarge("%s is too large to decode (%s); pictures may be at most %d pixels "
                         "wide or tall and %d pixels in all"
                         % (name, e, MAX_PICTURE_SIDE, MAX_PICTURE_PIXELS))
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ValueError(
            "cannot show %s as a picture (%s): give the path of an image "
            "file Pillow can read, such as a PNG or JPEG" % (name, reason))
