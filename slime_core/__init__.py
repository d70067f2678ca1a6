"""SLImE: Semantic Leakage from Image Embeddings.

One module per stage of the attack; see README.md for the map.
"""

__version__ = "0.1.0"
