"""Pure PyTorch compression techniques: data, teacher, distill, prune (PQI), quantize, evaluate, export.

Nothing in this package imports Prefect, SQL or the other Shrinkwrap packages.
"""
