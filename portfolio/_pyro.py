"""Pyro4 settings every BOHB process needs (master, name server, workers).

hpbandster talks over Pyro4; with NumPy 2 its default serializer (serpent) cannot encode the
results and the run hangs silently. Pickle works. The environment variables are read when Pyro4
is first imported (and are inherited by the worker processes we start); the config object is set
too in case Pyro4 was imported before us.
"""

from __future__ import annotations

import os

PYRO_ENV = {"PYRO_SERIALIZER": "pickle", "PYRO_SERIALIZERS_ACCEPTED": "pickle"}


def configure_pyro() -> None:
    os.environ.update(PYRO_ENV)
    import Pyro4

    Pyro4.config.SERIALIZER = "pickle"
    Pyro4.config.SERIALIZERS_ACCEPTED = {"pickle"}


configure_pyro()
