"""Data files shipped with the package (character map, left/right landmark symmetry)."""

from importlib import resources


def path(name: str):
    """Return a traversable path to the resource file `name`."""
    return resources.files(__name__).joinpath(name)
