"""CoTracker3 point tracker (Flax) and its offline / online predictors."""
