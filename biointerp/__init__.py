"""biointerp: an open workbench for interpreting genomic foundation models."""

__version__ = "0.1.0"
