"""The warrior command line: local stack, campaigns, leaderboard, experts, datasets."""
