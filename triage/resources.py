"""Where the files triage ships with are: the trained model, the default rules, the corpus.

They live inside the installed package (``triage/bundled/``), found with
:mod:`importlib.resources`, so a wheel installed anywhere runs from any folder. The
repository keeps them at its top (``models/``, ``rules.yaml``) and the build maps that
folder in as ``triage/bundled`` (see ``pyproject.toml``): one copy only.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# The files of a model folder, shipped or learned (read by triage.model, written by train).
MODEL_FILE = "triage-model.json"
WEIGHTS_FILE = "triage-model.npz"
METADATA_FILE = "metadata.json"


def data_dir() -> Path:
    """The folder holding ``rules.yaml`` and ``models/``.

    In a wheel that is ``triage/bundled``. An editable install runs the checkout itself,
    where the build's mapping does not apply (setuptools' editable finder does not
    serve a folder-only package inside a regular one): there the files are at the
    checkout's top, beside the package.
    """
    package = Path(str(files("triage")))
    shipped = package / "bundled"
    return shipped if shipped.is_dir() else package.parent


def default_model_dir() -> Path:
    """The folder of the model triage ships with."""
    return data_dir() / "models"


def default_rules_path() -> Path:
    """The default policy triage ships with (``rules.yaml``, commented)."""
    return data_dir() / "rules.yaml"


def corpus_dir() -> Path:
    """The labelled corpus: its template families (``families/<lang>/*.yaml``)."""
    return default_model_dir() / "corpus"
