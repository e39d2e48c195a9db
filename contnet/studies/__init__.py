"""Studies: runs planned as a list (config overrides + seed), resumable, each writing the same evidence
(artifact.py) that the docs' tables are rendered from."""
