"""Features of image datasets for the *_feature datasets (src/features/extract.py)."""
