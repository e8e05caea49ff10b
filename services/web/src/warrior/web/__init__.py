"""The read-only web viewer: campaigns, leaderboards, battles, datasets and flywheel reports in a browser."""
