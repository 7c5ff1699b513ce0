from setuptools import find_packages, setup

setup(
    name="spicesrv",
    version="0.1.0",
    description="A SPICE remote-display server framework on Twisted",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/spice_plugin.py"],
                  "spicesrv.web": ["static/*.html", "static/*.js", "static/*.css"]},
    install_requires=[
        "twisted>=23.8",
        "zope.interface>=5",
        "cryptography>=41",
        # the primes of the link stage's RSA keys (spicesrv.rsaprimes)
        "gmpy2>=2.1",
        "pyOpenSSL>=25.2",          # Context.set_tls13_ciphersuites
        "service-identity>=23",
        "lz4>=4",
        "Pillow>=10",
        "numpy>=1.24",
        "xcffib>=1.4",
        "simplejpeg>=1.7",
        # Opus for the sound channels, the file: sound source and sink, and VP8,
        # VP9 and H.264 video streams: FFmpeg (libvpx, libx264, libopus) in its wheels.
        "av>=12",
        # browsers: WebSocket framing, and HTTP requests on the SPICE ports
        "autobahn>=24.4",
        "h11>=0.14",
    ],
    extras_require={
        "test": ["qemu.qmp>=0.0.3", "sphinx>=7.4", "repoze.sphinx.autointerface>=1.1",
                 "hypothesis>=6.100"],
        "docs": ["sphinx>=7.4", "repoze.sphinx.autointerface>=1.1"],
    },
    entry_points={},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Emulators",
    ],
)
