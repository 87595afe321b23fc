"""distributions package."""
