"""The evaluation pipeline recognition_imagenet.py and objrecon_imagenet.py share (the model and data of a run,
rows, methods, maps, masks, one sharding policy), and the two thin pipelines on it: :mod:`.recognition` and
:mod:`.objrecon`. Their pages and figures are :mod:`utils.reports`'."""
