"""
The browser client's files: spice-html5, as a package installed it, and
spicesrv's own landing page.

Files are found at start-up and read into memory then: the server answers
only for those paths (no directory listings, nothing outside the client's
directory, no symbolic link leading out of it), with their content type,
an ETag and caching headers.
"""

import hashlib
import os
from dataclasses import dataclass

#: Where packages install spice-html5: Debian's and Fedora's C{spice-html5},
#: a local installation.
CLIENT_DIRS = ("/usr/share/spice-html5", "/usr/local/share/spice-html5")

#: Files a spice-html5 directory must have.
REQUIRED = ("main.js", "spiceconn.js")

#: The URL path the client's files are served under.
CLIENT_PREFIX = "/spice-html5/"

#: Content types by file name extension; other files are not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: The landing page's files: URL path -> file in L{STATIC}.
LANDING = {"/": "index.html", "/spicesrv.js": "spicesrv.js", "/spicesrv.css": "spicesrv.css"}

#: Caching: the landing page is revalidated on every load (it names the
#: client's files); the client's files may be kept for an hour, then
#: revalidated with their ETag.
LANDING_CACHE = "no-cache"
CLIENT_CACHE = "public, max-age=3600"


class ClientNotFound(Exception):
    """
    No spice-html5 where it was looked for; the message says where and how
    to install it.
    """


def locate_client(directory=None):
    """
    The spice-html5 directory: C{directory} if given (C{--web-client-dir}),
    else the first of L{CLIENT_DIRS} that has it.

    @raise ClientNotFound: it is not there.
    """
    candidates = [directory] if directory is not None else list(CLIENT_DIRS)
    for candidate in candidates:
        if all(os.path.isfile(os.path.join(candidate, name)) for name in REQUIRED):
            return os.path.realpath(candidate)
    if directory is not None:
        raise ClientNotFound("%s has no spice-html5 client (%s missing); give the directory "
                             "that holds spice-html5's main.js" % (directory, REQUIRED[0]))
    raise ClientNotFound("spice-html5 is not installed (looked in %s); install it with "
                         "'apt-get install spice-html5' (./dev does) or give "
                         "--web-client-dir DIR" % (", ".join(CLIENT_DIRS),))


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    contentType: str
    cacheControl: str
    etag: bytes

    @classmethod
    def read(cls, path, contentType, cacheControl):
        with open(path, "rb") as f:
            body = f.read()
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode("ascii") + b'"'
        return cls(body, contentType, cacheControl, etag)


def client_files(directory):
    """
    The files of a spice-html5 directory by URL path: regular files with a
    served extension, under L{CLIENT_PREFIX}; symbolic links only if they
    stay inside the directory.
    """
    root = os.path.realpath(directory)
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            ext = os.path.splitext(name)[1].lower()
            if name.startswith(".") or ext not in CONTENT_TYPES:
                continue
            path = os.path.join(dirpath, name)
            real = os.path.realpath(path)
            if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
                continue
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            files[CLIENT_PREFIX + relative] = StaticFile.read(real, CONTENT_TYPES[ext],
                                                             CLIENT_CACHE)
    return files


class WebClient:
    """
    Everything the web front serves with C{--web-client}: the landing page
    and spice-html5's files, by URL path.
    """

    def __init__(self, directory=None):
        self.directory = locate_client(directory)
        self.files = client_files(self.directory)
        for path, name in LANDING.items():
            ext = os.path.splitext(name)[1]
            self.files[path] = StaticFile.read(os.path.join(STATIC, name),
                                               CONTENT_TYPES[ext], LANDING_CACHE)

    def get(self, path):
        """
        The L{StaticFile} for a URL path (without its query), or L{None}.
        """
        return self.files.get(path)
