from .math import add, multiply

__all__ = ["add", "multiply"]
