"""The end-to-end demo on the procedural shapes (`make demo`): run.py runs it, report.py writes
what a person reads (report.md, report.json, pictures)."""
