"""Development helpers: a throwaway real Synapse and a small Matrix test client."""
