"""``python -m gradscope``."""

from .cli import run

run()
