"""The training pipeline behind main_INets.py: the trainer, its data, loops and recipe from timm's parts, the run
log."""
