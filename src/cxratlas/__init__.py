"""CXR Atlas: compare how chest X-ray foundation models see the same images."""

__version__ = "0.1.0"
