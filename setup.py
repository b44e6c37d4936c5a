"""Dynamo: an inventory server for large scientific data management."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="dynamo-inventory",
    version="0.1.0",
    description="In-memory inventory server for large scientific data management",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["dynamo", "dynamo.*"]),
    data_files=[("share/dynamo/schema", [str(p) for p in sorted(Path("schema").glob("*.sql"))])],
    install_requires=[
        "PyMySQL>=1.1",
        "CherryPy>=18.8",
        "pyOpenSSL>=23.0",
        "cryptography>=41",  # X.509 extensions (proxy certificates); pyOpenSSL needs it anyway
        "setproctitle>=1.3",
    ],
    extras_require={
        # selenium: the browser test
        "test": ["pytest>=7.4", "ruff>=0.4", "mypy>=1.8", "hypothesis>=6.90", "selenium>=4.20"],
    },
    # the hot command: a lean script of its own (scripts/dynamo says why); the others are entry points
    scripts=["scripts/dynamo"],
    entry_points={
        "console_scripts": [
            "dynamod = dynamo.cli.dynamod:main",
            "dynamo-inject = dynamo.cli.inject:main",
            "dynamo-exec-auth = dynamo.cli.exec_auth:main",
            "dynamo-user-auth = dynamo.cli.user_auth:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
    ],
)
