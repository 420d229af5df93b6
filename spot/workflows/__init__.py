"""Workflows: clients of the library (the study grid, the embedded demo, mixed-task serving).

They call the functions of `spot.model`, `spot.data`, `spot.train`, `spot.library`,
`spot.retrieval` and `spot.analysis` and re-implement none of them.
"""
