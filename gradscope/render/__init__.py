"""Rendering: rich views of the core's result objects. Nothing in the core imports this package."""
