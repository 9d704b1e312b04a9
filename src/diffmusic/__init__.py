"""diffmusic."""
