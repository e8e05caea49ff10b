"""The campaign controller: one active replica (leader-elected through Redis) drives every running
campaign to its end: re-sends stages that stopped moving, marks campaigns finished, and finalizes the
ratings and builds the dataset when a campaign completes."""
