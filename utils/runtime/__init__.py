"""What every pipeline runs on: distributed set-up, seeding, atomic I/O, the run and evaluation folder layout,
how forwards run, command-line helpers."""
